package monitoring

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestAlertRules: promtool checks the rule files and runs their unit tests
// (deploy/prometheus/tests), and every alert rule has a unit test in which
// it fires and, later in the same test, resolves; every rule file is under
// test.
func TestAlertRules(t *testing.T) {
	promtool, _ := prometheusTools(t)
	root := repoRoot(t)
	var ruleFiles, testFiles []string
	for _, f := range glob(t, rulesGlob) {
		ruleFiles = append(ruleFiles, rel(t, root, f))
	}
	for _, f := range glob(t, ruleTestsGlob) {
		testFiles = append(testFiles, rel(t, root, f))
	}
	t.Log(run(t, promtool, append([]string{"check", "rules"}, ruleFiles...)...))
	t.Log(run(t, promtool, append([]string{"test", "rules"}, testFiles...)...))

	tested := map[string]bool{}
	type verdict struct{ fired, resolved time.Duration }
	proofs := map[string][]verdict{} // alert -> per test group
	for _, f := range glob(t, ruleTestsGlob) {
		var tf RuleTestFile
		readYAML(t, f, &tf)
		for _, rf := range tf.RuleFiles {
			tested[filepath.Clean(filepath.Join(filepath.Dir(f), rf))] = true
		}
		for _, group := range tf.Tests {
			byAlert := map[string]*verdict{}
			for _, a := range group.AlertRuleTest {
				at, err := model.ParseDuration(a.EvalTime)
				if err != nil {
					t.Fatalf("%s, %s: eval_time %q: %v", f, group.Name, a.EvalTime, err)
				}
				v := byAlert[a.Alertname]
				if v == nil {
					v = &verdict{fired: -1, resolved: -1}
					byAlert[a.Alertname] = v
				}
				if len(a.ExpAlerts) > 0 && v.fired < 0 {
					v.fired = time.Duration(at)
				}
				if len(a.ExpAlerts) == 0 && v.fired >= 0 && time.Duration(at) > v.fired {
					v.resolved = time.Duration(at)
				}
			}
			for name, v := range byAlert {
				proofs[name] = append(proofs[name], *v)
			}
		}
	}

	for f, rs := range rules(t) {
		if !tested[f] {
			t.Errorf("%s: no test file of %s names it in rule_files", rel(t, root, f), ruleTestsGlob)
		}
		for _, r := range rs {
			if r.Alert == "" {
				continue
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: a summary and a description are needed", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical (alertmanager.yml routes on it)", r.Alert, s)
			}
			proved := slices.ContainsFunc(proofs[r.Alert], func(v verdict) bool { return v.fired >= 0 && v.resolved > v.fired })
			if !proved {
				t.Errorf("alert %s: no unit test in %s in which it fires, then resolves", r.Alert, ruleTestsGlob)
			}
		}
	}
}

// TestPrometheusConfig: promtool checks prometheus.yml (and the rule files
// it loads), which loads every rule file and scrapes the jobs the rules
// and dashboards select on.
func TestPrometheusConfig(t *testing.T) {
	promtool, _ := prometheusTools(t)
	out := run(t, promtool, "check", "config", prometheusConfig)
	for _, f := range glob(t, rulesGlob) {
		if !strings.Contains(out, rel(t, filepath.Join(repoRoot(t), "deploy/prometheus"), f)) {
			t.Errorf("prometheus.yml does not load %s:\n%s", f, out)
		}
	}
	var cfg PrometheusConfig
	readYAML(t, filepath.Join(repoRoot(t), prometheusConfig), &cfg)
	var jobs []string
	for _, s := range cfg.ScrapeConfigs {
		jobs = append(jobs, s.JobName)
	}
	for _, j := range []string{jobWorker, jobReceiver, jobTemporal} {
		if !slices.Contains(jobs, j) {
			t.Errorf("prometheus.yml scrapes jobs %v, not %s", jobs, j)
		}
	}
}

// TestAlertmanagerConfig: amtool checks alertmanager.yml, and every alert
// of the rules, whatever its severity, is routed to the webhook.
func TestAlertmanagerConfig(t *testing.T) {
	_, amtool := prometheusTools(t)
	t.Log(run(t, amtool, "check-config", alertmanagerFile))
	for _, rs := range rules(t) {
		for _, r := range rs {
			if r.Alert == "" {
				continue
			}
			got := strings.TrimSpace(run(t, amtool, "config", "routes", "test", "--config.file="+alertmanagerFile,
				"alertname="+r.Alert, "severity="+r.Labels["severity"]))
			if got != "webhook" {
				t.Errorf("alert %s goes to %q, want the webhook receiver", r.Alert, got)
			}
		}
	}
}

func rel(t *testing.T, base, path string) string {
	t.Helper()
	r, err := filepath.Rel(base, path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
