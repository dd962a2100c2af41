// Package compose holds the checks of the Docker Compose files at the
// repository root (docker-compose.yml and its mTLS override) and of the
// certificate script the override needs. They run without a Docker engine:
// the files are loaded and validated with compose-go, the Compose
// Specification's reference implementation, the library Docker Compose
// itself uses. Only tests import it, so it stays out of the binaries.
package compose
