package compose

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/iot-ops/tsbulk/harness/monitoring"
)

// hostPath is where the file a service sees at containerPath comes from
// on the host, through its bind mounts ("" when none holds it).
func hostPath(s types.ServiceConfig, containerPath string) string {
	best, found := "", ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if containerPath == v.Target || strings.HasPrefix(containerPath, v.Target+"/") {
			if len(v.Target) > len(best) {
				best = v.Target
				found = filepath.Join(v.Source, strings.TrimPrefix(containerPath, v.Target))
			}
		}
	}
	return found
}

// flag is the value of --name=value in the service's command.
func flag(s types.ServiceConfig, name string) string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// releases are the Prometheus and Alertmanager releases promtool and
// amtool are installed at (scripts/ensure-prometheus-tools.sh).
func releases(t *testing.T) (prometheus, alertmanager string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "ensure-prometheus-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("scripts/ensure-prometheus-tools.sh has no %s= line", name)
		}
		return string(m[1])
	}
	return get("prometheus_release"), get("alertmanager_release")
}

// TestMonitoringServices: Prometheus, Alertmanager and Grafana run pinned
// releases (Prometheus and Alertmanager those whose promtool and amtool
// check the files in make test), publish their ports on the host's
// loopback only, and their configuration comes from the repository's
// files, mounted where their commands read them.
func TestMonitoringServices(t *testing.T) {
	root := repoRoot(t)
	promRelease, amRelease := releases(t)
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			p := load(t, st.files...)
			pinned := regexp.MustCompile(`^[a-z0-9./-]+:v?\d+\.\d+\.\d+$`)
			for name, want := range map[string]string{
				"prometheus":   "prom/prometheus:v" + promRelease,
				"alertmanager": "prom/alertmanager:v" + amRelease,
				"grafana":      "",
			} {
				s := service(t, p, name)
				if !pinned.MatchString(s.Image) {
					t.Errorf("%s runs %q, not an image pinned to a release x.y.z", name, s.Image)
				}
				if want != "" && s.Image != want {
					t.Errorf("%s runs %s, want %s: the release whose tool checks its files", name, s.Image, want)
				}
				for _, port := range s.Ports {
					if port.HostIP != "127.0.0.1" {
						t.Errorf("%s publishes %s on %q, want the loopback 127.0.0.1", name, port.Published, port.HostIP)
					}
				}
				if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
					t.Errorf("%s has no healthcheck", name)
				}
			}

			// want checks that the service reads the repository's file.
			want := func(service, containerPath, repoFile string) {
				t.Helper()
				got := hostPath(p.Services[service], containerPath)
				if got != filepath.Join(root, repoFile) {
					t.Errorf("%s reads %s, which is %q on the host, want %s", service, containerPath, got, repoFile)
				}
				if _, err := os.Stat(got); err != nil {
					t.Errorf("%s: %v", service, err)
				}
			}
			want("prometheus", flag(p.Services["prometheus"], "config.file"), "deploy/prometheus/prometheus.yml")
			want("alertmanager", flag(p.Services["alertmanager"], "config.file"), "deploy/alertmanager/alertmanager.yml")
			grafana := p.Services["grafana"]
			want("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml",
				"deploy/grafana/provisioning/datasources/prometheus.yml")
			want("grafana", "/etc/grafana/provisioning/dashboards/tsbulk.yml", "deploy/grafana/provisioning/dashboards/tsbulk.yml")

			// The dashboards provider's folder holds the dashboards.
			var provider struct {
				Providers []struct {
					Options struct {
						Path string `yaml:"path"`
					} `yaml:"options"`
				} `yaml:"providers"`
			}
			readYAML(t, filepath.Join(root, "deploy/grafana/provisioning/dashboards/tsbulk.yml"), &provider)
			if len(provider.Providers) != 1 {
				t.Fatalf("deploy/grafana/provisioning/dashboards/tsbulk.yml: want one provider, got %d", len(provider.Providers))
			}
			dir := hostPath(grafana, provider.Providers[0].Options.Path)
			if dir != filepath.Join(root, "deploy/grafana/dashboards") {
				t.Errorf("the dashboards provider reads %s, %q on the host, want deploy/grafana/dashboards",
					provider.Providers[0].Options.Path, dir)
			}
			for _, d := range []string{"bulk-changes.json", "sla.json", "workers.json"} {
				if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
					t.Errorf("dashboard %s: %v", d, err)
				}
			}
			home := env(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
			if _, err := os.Stat(hostPath(grafana, home)); err != nil {
				t.Errorf("Grafana's home dashboard %s is not a mounted file: %v", home, err)
			}
		})
	}
}

// TestBindMountsExist: every file or folder a service of
// docker-compose.yml mounts from the repository exists (the certificates
// of the mTLS override are generated: TestMTLSOverride checks those).
func TestBindMountsExist(t *testing.T) {
	p := load(t, baseFile)
	for _, name := range names(p) {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
		}
	}
}

// TestPrometheusScrapesTheServices: each target of prometheus.yml (and
// Grafana's data source, and the Alertmanager Prometheus sends to) is a
// service of docker-compose.yml, at the port that service listens on.
func TestPrometheusScrapesTheServices(t *testing.T) {
	root := repoRoot(t)
	p := load(t, baseFile)
	port := func(addr string) string {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("address %q: %v", addr, err)
		}
		return port
	}
	// Where each service serves what is scraped of it: its settings, or
	// the image's default.
	listens := map[string]string{
		"worker":            port(env(service(t, p, "worker"), "TSBULK_WORKER_LISTEN")),
		"callback-receiver": port(env(service(t, p, "callback-receiver"), "TSBULK_CALLBACKS_ADMIN_LISTEN")),
		"temporal":          port(env(service(t, p, "temporal"), "PROMETHEUS_ENDPOINT")),
		"alertmanager":      "9093", // --web.listen-address's default
		"prometheus":        "9090", // likewise
	}
	for name := range listens {
		service(t, p, name)
	}
	if f := flag(p.Services["alertmanager"], "web.listen-address"); f != "" {
		t.Errorf("alertmanager listens on %s: the targets below expect the default :9093", f)
	}
	check := func(what, target string) {
		t.Helper()
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			t.Errorf("%s: target %q: %v", what, target, err)
			return
		}
		if host == "localhost" {
			host = "prometheus" // its own
		}
		want, ok := listens[host]
		if !ok {
			t.Errorf("%s: %s is not a service whose port the test knows (%v)", what, host, listens)
			return
		}
		if port != want {
			t.Errorf("%s: %s on port %s, but it listens on %s", what, host, port, want)
		}
	}

	// Read as harness/monitoring reads it.
	var cfg monitoring.PrometheusConfig
	readYAML(t, filepath.Join(root, "deploy/prometheus/prometheus.yml"), &cfg)
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				check("job "+sc.JobName, target)
				host, _, _ := net.SplitHostPort(target)
				scraped[host] = true
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				check("job "+sc.JobName, net.JoinHostPort(n, strconv.Itoa(d.Port)))
				scraped[n] = true
			}
		}
	}
	for _, s := range []string{"worker", "callback-receiver", "temporal"} {
		if !scraped[s] {
			t.Errorf("prometheus.yml does not scrape %s", s)
		}
	}
	for _, am := range cfg.Alerting.Alertmanagers {
		for _, s := range am.StaticConfigs {
			for _, target := range s.Targets {
				check("alerting", target)
			}
		}
	}

	var ds struct {
		Datasources []struct {
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(root, "deploy/grafana/provisioning/datasources/prometheus.yml"), &ds)
	for _, d := range ds.Datasources {
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Errorf("Grafana data source %q: %v", d.URL, err)
			continue
		}
		check("Grafana data source", u.Host)
		if u.Path != "" && u.Path != "/" {
			t.Errorf("Grafana data source %s: Prometheus serves at /", d.URL)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
