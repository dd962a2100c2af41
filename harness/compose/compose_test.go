package compose

import (
	"context"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	baseFile = "docker-compose.yml"
	mtlsFile = "docker-compose.mtls.yml"

	// What the override mounts the certificates from, and where.
	certsDir   = "deploy/temporal/certs"
	certsMount = "/certs/"
)

// repoRoot is where the compose files are: go test runs in harness/compose.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// load reads the files as `docker compose -f A -f B config` does: merged in
// order, interpolated, validated against the Compose Specification's JSON
// schema after each file, and checked for consistency (every service,
// network and volume a service refers to exists). Every profile is on, so
// that the tools (starter, temporal-admin-tools) are checked too.
func load(t *testing.T, files ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	details := types.ConfigDetails{
		WorkingDir: root,
		// TSBULK_IMAGE unset: the image is its default, tsbulk:local.
		Environment: types.Mapping{"USER": "compose-test"},
	}
	for _, f := range files {
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: filepath.Join(root, f)})
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("tsbulk", true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(files, " + "), err)
	}
	return p
}

// stacks are the two ways the stack is started (deploy/README.md).
var stacks = []struct {
	name  string
	files []string
}{
	{"plain", []string{baseFile}},
	{"mtls", []string{baseFile, mtlsFile}},
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("no service %s", name)
	}
	return s
}

// names are the project's services in order, for reproducible failures.
func names(p *types.Project) []string {
	return slices.Sorted(maps.Keys(p.Services))
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// TestComposeFilesAreValid loads docker-compose.yml alone and with the mTLS
// override, and checks what the schema cannot: the Temporal images are the
// supported ones of one release, and every depends_on condition can be met
// (a service_healthy target has a healthcheck, a
// service_completed_successfully target is a one-shot that exits).
func TestComposeFilesAreValid(t *testing.T) {
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			p := load(t, st.files...)

			server := service(t, p, "temporal").Image
			release, ok := strings.CutPrefix(server, "temporalio/server:")
			if !ok {
				t.Fatalf("service temporal runs %s, not temporalio/server", server)
			}
			for _, name := range names(p) {
				s := p.Services[name]
				// auto-setup is deprecated upstream; admin-tools loads the
				// schemas and registers the namespace instead.
				if strings.HasPrefix(s.Image, "temporalio/auto-setup") {
					t.Errorf("service %s runs the deprecated %s", name, s.Image)
				}
				// temporal-schema loads the schemas the admin-tools image
				// ships: they must be the server's release.
				if tag, ok := strings.CutPrefix(s.Image, "temporalio/admin-tools:"); ok && !strings.HasPrefix(tag, release+"-") {
					t.Errorf("service %s runs %s, not the admin tools of the server's release %s", name, s.Image, release)
				}
			}

			for _, name := range names(p) {
				for dep, d := range p.Services[name].DependsOn {
					target := service(t, p, dep)
					switch d.Condition {
					case types.ServiceConditionHealthy:
						if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
							t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
						}
					case types.ServiceConditionCompletedSuccessfully:
						// A service that restarts when it exits 0 never
						// completes: the wait would never end.
						if target.Restart != "" && target.Restart != "no" && !strings.HasPrefix(target.Restart, "on-failure") {
							t.Errorf("%s waits for %s to complete, which restarts %q", name, dep, target.Restart)
						}
					}
				}
			}
		})
	}
}

// TestStartOrder pins the dependencies the stack's start order rests on
// (deploy/README.md): the schemas before the server, the namespace and the
// search attributes before anything starts a workflow, the product's
// migrations before the product.
func TestStartOrder(t *testing.T) {
	want := []struct{ service, dependency, condition string }{
		{"temporal-schema", "postgresql", types.ServiceConditionHealthy},
		{"temporal", "temporal-schema", types.ServiceConditionCompletedSuccessfully},
		{"temporal-setup", "temporal", types.ServiceConditionHealthy},
		{"temporal-ui", "temporal", types.ServiceConditionHealthy},
		{"temporal-admin-tools", "temporal", types.ServiceConditionHealthy},
		{"migrate", "postgresql", types.ServiceConditionHealthy},
		{"worker", "migrate", types.ServiceConditionCompletedSuccessfully},
		{"worker", "temporal-setup", types.ServiceConditionCompletedSuccessfully},
		{"callback-receiver", "migrate", types.ServiceConditionCompletedSuccessfully},
		{"callback-receiver", "temporal-setup", types.ServiceConditionCompletedSuccessfully},
		{"register-callback", "callback-receiver", types.ServiceConditionHealthy},
		{"starter", "worker", types.ServiceConditionHealthy},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			p := load(t, st.files...)
			for _, w := range want {
				d, ok := service(t, p, w.service).DependsOn[w.dependency]
				if !ok || d.Condition != w.condition {
					t.Errorf("%s depends on %s with %q, want %q", w.service, w.dependency, d.Condition, w.condition)
				}
			}
		})
	}
}

// TestTemporalServerConfiguration checks what the server image reads from
// the environment against the repository: the dynamic configuration file
// is mounted where DYNAMIC_CONFIG_FILE_PATH points, and the history shard
// count (fixed once the database is in use) is the one the server run
// without Docker uses.
func TestTemporalServerConfiguration(t *testing.T) {
	root := repoRoot(t)
	s := service(t, load(t, baseFile), "temporal")

	file := env(s, "DYNAMIC_CONFIG_FILE_PATH")
	var mounted string
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == path.Dir(file) {
			mounted = filepath.Join(v.Source, path.Base(file))
		}
	}
	if mounted == "" {
		t.Fatalf("DYNAMIC_CONFIG_FILE_PATH=%s is in no mounted directory of service temporal", file)
	}
	if want := filepath.Join(root, "deploy/temporal/dynamicconfig/tsbulk.yaml"); mounted != want {
		t.Errorf("DYNAMIC_CONFIG_FILE_PATH is %s on the host, want %s", mounted, want)
	}
	if _, err := os.Stat(mounted); err != nil {
		t.Error(err)
	}

	b, err := os.ReadFile(filepath.Join(root, "deploy/temporal/config/development-postgres.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*numHistoryShards:\s*(\d+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no numHistoryShards in deploy/temporal/config/development-postgres.yaml")
	}
	if got := env(s, "NUM_HISTORY_SHARDS"); got != string(m[1]) {
		t.Errorf("NUM_HISTORY_SHARDS is %q, development-postgres.yaml has %s", got, m[1])
	}
}

// generatedFiles lists what deploy/temporal/certs/generate.sh writes (its
// `files=` line).
func generatedFiles(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), certsDir, "generate.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^files="([^"]+)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal(`generate.sh has no files="..." line`)
	}
	return strings.Fields(string(m[1]))
}

// TestMTLSOverride checks that with docker-compose.mtls.yml every client of
// the Temporal frontend presents a certificate, and the server requires
// one: a service left out would fail to connect, or, for the server, accept
// clients without one. Each certificate file a variable names must be
// mounted read-only from what generate.sh writes, in the syntax that does
// not create a missing source as an empty directory.
func TestMTLSOverride(t *testing.T) {
	root := repoRoot(t)
	p := load(t, baseFile, mtlsFile)
	generated := generatedFiles(t)

	// mounted checks that the certificate the variable key names is
	// mounted into s as the override must mount it.
	mounted := func(name string, s types.ServiceConfig, key string) {
		t.Helper()
		target := env(s, key)
		base, ok := strings.CutPrefix(target, certsMount)
		if !ok || !slices.Contains(generated, base) {
			t.Errorf("%s: %s=%q, want %s<one of %s>", name, key, target, certsMount, strings.Join(generated, " "))
			return
		}
		for _, v := range s.Volumes {
			if v.Target != target {
				continue
			}
			if want := filepath.Join(root, certsDir, base); v.Type != types.VolumeTypeBind || v.Source != want {
				t.Errorf("%s: %s is mounted from %s %s, want bind %s", name, target, v.Type, v.Source, want)
			}
			if !v.ReadOnly || v.Bind == nil || bool(v.Bind.CreateHostPath) {
				t.Errorf("%s: %s must be mounted read_only with bind.create_host_path false", name, target)
			}
			return
		}
		t.Errorf("%s: %s=%s is not mounted", name, key, target)
	}
	// has checks the variables' values; those naming a certificate are
	// checked to be mounted.
	has := func(name string, vars map[string]string) {
		t.Helper()
		s := service(t, p, name)
		for key, want := range vars {
			if got := env(s, key); got != want {
				t.Errorf("%s: %s=%q, want %q", name, key, got, want)
			} else if strings.HasPrefix(want, certsMount) {
				mounted(name, s, key)
			}
		}
	}

	has("temporal", map[string]string{
		"TEMPORAL_TLS_REQUIRE_CLIENT_AUTH":   "true",
		"TEMPORAL_TLS_FRONTEND_CERT":         "/certs/server.pem",
		"TEMPORAL_TLS_FRONTEND_KEY":          "/certs/server.key",
		"TEMPORAL_TLS_CLIENT1_CA_CERT":       "/certs/ca.pem",
		"TEMPORAL_TLS_FRONTEND_SERVER_NAME":  "temporal",
		"TEMPORAL_TLS_SERVER_CERT":           "/certs/server.pem",
		"TEMPORAL_TLS_SERVER_KEY":            "/certs/server.key",
		"TEMPORAL_TLS_SERVER_CA_CERT":        "/certs/ca.pem",
		"TEMPORAL_TLS_INTERNODE_SERVER_NAME": "temporal",
		// Its healthcheck's CLI.
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/certs/ca.pem",
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    "/certs/server.pem",
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     "/certs/server.key",
		"TEMPORAL_TLS_SERVER_NAME":         "temporal",
	})
	has("temporal-ui", map[string]string{
		"TEMPORAL_TLS_CA":                       "/certs/ca.pem",
		"TEMPORAL_TLS_CERT":                     "/certs/client.pem",
		"TEMPORAL_TLS_KEY":                      "/certs/client.key",
		"TEMPORAL_TLS_SERVER_NAME":              "temporal",
		"TEMPORAL_TLS_ENABLE_HOST_VERIFICATION": "true",
	})

	cli := map[string]string{
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/certs/ca.pem",
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    "/certs/client.pem",
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     "/certs/client.key",
		"TEMPORAL_TLS_SERVER_NAME":         "temporal",
	}
	product := map[string]string{
		"TSBULK_TEMPORAL_TLS_ENABLED":     "true",
		"TSBULK_TEMPORAL_TLS_CA_FILE":     "/certs/ca.pem",
		"TSBULK_TEMPORAL_TLS_CERT_FILE":   "/certs/client.pem",
		"TSBULK_TEMPORAL_TLS_KEY_FILE":    "/certs/client.key",
		"TSBULK_TEMPORAL_TLS_SERVER_NAME": "temporal",
	}
	// Services of the product's image that are configured with a Temporal
	// address but never dial it.
	noTemporal := map[string]string{
		"migrate":           "worker migrate: PostgreSQL only",
		"register-callback": "callback-receiver register: ThingSpace and PostgreSQL only",
	}
	for name := range noTemporal {
		service(t, p, name)
	}
	var clients []string
	for _, name := range names(p) {
		s := p.Services[name]
		switch {
		case strings.HasPrefix(s.Image, "temporalio/admin-tools:") && env(s, "TEMPORAL_ADDRESS") != "":
			has(name, cli)
			clients = append(clients, name)
		case s.Build != nil && env(s, "TSBULK_TEMPORAL_ADDRESS") != "" && noTemporal[name] == "":
			has(name, product)
			clients = append(clients, name)
		}
	}
	want := []string{"callback-receiver", "starter", "temporal-admin-tools", "temporal-setup", "worker"}
	if !slices.Equal(clients, want) {
		t.Errorf("the Temporal clients checked are %v, want %v", clients, want)
	}
}

// TestPlainStackNeedsNoCertificates: without the override nothing uses
// TLS or mounts the certificates, so `docker compose up` works before
// generate.sh has run.
func TestPlainStackNeedsNoCertificates(t *testing.T) {
	p := load(t, baseFile)
	certs := filepath.Join(repoRoot(t), certsDir)
	for _, name := range names(p) {
		s := p.Services[name]
		for key := range s.Environment {
			if strings.Contains(key, "_TLS") {
				t.Errorf("%s sets %s without the mTLS override", name, key)
			}
		}
		for _, v := range s.Volumes {
			if v.Source == certs || strings.HasPrefix(v.Source, certs+string(filepath.Separator)) {
				t.Errorf("%s mounts %s without the mTLS override", name, v.Source)
			}
		}
	}
}
