// Package compose holds the checks of the Docker Compose files at the
// repository root (docker-compose.yml and its mTLS override), of the
// certificate script the override needs, and of the monitoring services
// (Prometheus, Alertmanager, Grafana): pinned releases reading the
// repository's files, scraping the services where they listen (the files'
// content is harness/monitoring's). They run without a Docker engine: the
// files are loaded and validated with compose-go, the Compose
// Specification's reference implementation, the library Docker Compose
// itself uses. Only tests import it, so it stays out of the binaries.
package compose
