package monitoring

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
)

var parser = promql.NewParser(promql.Options{})

// grafanaVariable matches a use of a dashboard variable: $name, ${name},
// ${name:format} or [[name]].
var grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// builtins are Grafana's own variables, by a value they can take.
var builtins = map[string]string{"__rate_interval": "1m", "__interval": "15s", "__range": "6h", "__range_s": "21600"}

// query is a PromQL expression of a dashboard or a rule, where it is.
type query struct {
	where, expr string
}

// dashboardQueries returns every PromQL expression of the dashboard, its
// variables replaced by values they can take, and the label_values()
// queries of its variables as (metric, label) pairs. Undefined variables
// and unparsable expressions are errors.
func dashboardQueries(t *testing.T, file string, d Dashboard) (queries []query, labelValues [][2]string) {
	t.Helper()
	vars := map[string]string{}
	labelValuesQuery := regexp.MustCompile(`^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*(\w+)\s*\)$`)
	for _, v := range d.Templating.List {
		switch v.Type {
		case "custom":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("%s: variable %s: query %s: %v", file, v.Name, v.Query, err)
			}
			vars[v.Name] = strings.Split(q, ",")[0]
		case "query":
			m := labelValuesQuery.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: %q is not label_values(metric, label)", file, v.Name, v.Definition)
				continue
			}
			labelValues = append(labelValues, [2]string{m[1], m[2]})
			// A value as it comes from the label: used with = and =~ alike.
			vars[v.Name] = "value"
		default:
			t.Errorf("%s: variable %s of type %s: the test knows custom and query", file, v.Name, v.Type)
		}
	}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			where := fmt.Sprintf("%s, panel %q, query %s", filepath.Base(file), p.Title, tg.RefID)
			expr := grafanaVariable.ReplaceAllStringFunc(tg.Expr, func(use string) string {
				m := grafanaVariable.FindStringSubmatch(use)
				name := m[1] + m[2] + m[3]
				if v, ok := builtins[name]; ok {
					return v
				}
				if v, ok := vars[name]; ok {
					return v
				}
				t.Errorf("%s: variable $%s is not defined", where, name)
				return use
			})
			queries = append(queries, query{where: where, expr: expr})
		}
	}
	return queries, labelValues
}

// TestDashboards: the dashboards are well-formed for provisioning (unique
// uids and panel ids, every query panel on the provisioned data source, a
// query in each), every variable they use is defined and every query
// parses as PromQL.
func TestDashboards(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repoRoot(t), datasourcesFile), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("%s: want one Prometheus data source, got %+v", datasourcesFile, ds.Datasources)
	}
	uid := ds.Datasources[0].UID
	onDatasource := func(where string, d *Datasource) {
		if d == nil || d.UID != uid || d.Type != "prometheus" {
			t.Errorf("%s: data source %+v, want the provisioned %s", where, d, uid)
		}
	}

	uids := map[string]string{}
	for file, d := range dashboards(t) {
		name := filepath.Base(file)
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: a uid and a title are needed", name)
		}
		if other, ok := uids[d.UID]; ok {
			t.Errorf("%s and %s have the same uid %s", name, other, d.UID)
		}
		uids[d.UID] = name
		ids := map[int]bool{}
		for _, p := range allPanels(d.Panels) {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", name, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			where := fmt.Sprintf("%s, panel %q", name, p.Title)
			onDatasource(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				onDatasource(where+" query "+tg.RefID, tg.Datasource)
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: query %s is empty", where, tg.RefID)
				}
			}
		}
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				onDatasource(name+" variable "+v.Name, v.Datasource)
			}
		}
		queries, _ := dashboardQueries(t, file, d)
		for _, q := range queries {
			if _, err := parser.ParseExpr(q.expr); err != nil {
				t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			}
		}
	}
	for _, want := range []string{"tsbulk-bulk-changes", "tsbulk-sla", "tsbulk-workers"} {
		if uids[want] == "" {
			t.Errorf("no dashboard %s", want)
		}
	}
}

// prometheusSeries are the series Prometheus makes itself, with their
// labels: no process exports them, so no run can.
var prometheusSeries = map[string][]string{"up": {"job", "instance"}}

// checkNames fails the test for each metric of q that is neither exported
// by the run, nor recorded by a rule of the repository, nor one of
// Prometheus's own, and for each label it selects or groups by that the
// metric does not carry; a job it selects must be one prometheus.yml
// scrapes.
func checkNames(t *testing.T, ex *Exported, recorded map[string]bool, jobs []string, q query) {
	t.Helper()
	expr, err := parser.ParseExpr(q.expr)
	if err != nil {
		t.Errorf("%s: %v", q.where, err)
		return
	}
	// labelsOf is the label set of a metric, nil when it is not checked
	// (recorded by a rule) and false when it is unknown.
	labelsOf := func(name string) (map[string]bool, bool) {
		if recorded[name] {
			return nil, true
		}
		if ls, ok := prometheusSeries[name]; ok {
			m := map[string]bool{}
			for _, l := range ls {
				m[l] = true
			}
			return m, true
		}
		m, ok := ex.Metrics[name]
		return m, ok
	}
	promql.Inspect(expr, func(node promql.Node, _ []promql.Node) error {
		switch n := node.(type) {
		case *promql.VectorSelector:
			known, ok := labelsOf(n.Name)
			if !ok {
				t.Errorf("%s: metric %s is not exported by a real run (nor recorded by a rule of %s)", q.where, n.Name,
					rulesGlob)
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" {
					continue
				}
				if known != nil && !known[m.Name] {
					t.Errorf("%s: %s has no label %s (it has %s)", q.where, n.Name, m.Name, strings.Join(sortedKeys(known), ", "))
				}
				if m.Name == "job" && m.Type == labels.MatchEqual && !slices.Contains(jobs, m.Value) {
					t.Errorf("%s: job %q is not one prometheus.yml scrapes (%v)", q.where, m.Value, jobs)
				}
			}
		case *promql.AggregateExpr:
			if n.Without || len(n.Grouping) == 0 {
				return nil
			}
			// Each label grouped by must be on a metric below.
			var below []map[string]bool
			checked := true
			promql.Inspect(n.Expr, func(inner promql.Node, _ []promql.Node) error {
				if vs, ok := inner.(*promql.VectorSelector); ok {
					ls, ok := labelsOf(vs.Name)
					if ls == nil || !ok {
						checked = false
					}
					below = append(below, ls)
				}
				return nil
			})
			if !checked {
				return nil
			}
			for _, l := range n.Grouping {
				if !slices.ContainsFunc(below, func(ls map[string]bool) bool { return ls[l] }) {
					t.Errorf("%s: grouped by %s, which no metric below carries", q.where, l)
				}
			}
		}
		return nil
	})
}

// recordedAndJobs are the metrics the repository's rules record and the
// jobs prometheus.yml scrapes.
func recordedAndJobs(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	recorded := map[string]bool{}
	for _, rs := range rules(t) {
		for _, r := range rs {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	var cfg PrometheusConfig
	readYAML(t, filepath.Join(repoRoot(t), prometheusConfig), &cfg)
	var jobs []string
	for _, s := range cfg.ScrapeConfigs {
		jobs = append(jobs, s.JobName)
	}
	return recorded, jobs
}

// TestDashboardsUseExportedMetrics: every metric a dashboard queries (its
// panels and its variables), and every label it selects or groups by, is
// exported by a real end-to-end run: the worker's and the callback
// receiver's /metrics and the Temporal server's, scraped during and after
// a bulk change. Only the series Prometheus makes itself (up) and those the
// repository's rules record are named otherwise.
func TestDashboardsUseExportedMetrics(t *testing.T) {
	ex := exportedByRealRun(t)
	recorded, jobs := recordedAndJobs(t)
	for file, d := range dashboards(t) {
		queries, labelValues := dashboardQueries(t, file, d)
		for _, q := range queries {
			checkNames(t, ex, recorded, jobs, q)
		}
		for _, lv := range labelValues {
			checkNames(t, ex, recorded, jobs, query{where: filepath.Base(file) + " variable",
				expr: fmt.Sprintf("count by (%s) (%s)", lv[1], lv[0])})
		}
	}
	if t.Failed() {
		t.Logf("what the run exported: %s", ex.dump(t))
	}
}

// TestRulesUseExportedMetrics: the same of every recording and alerting
// rule's expression.
func TestRulesUseExportedMetrics(t *testing.T) {
	ex := exportedByRealRun(t)
	recorded, jobs := recordedAndJobs(t)
	for file, rs := range rules(t) {
		for _, r := range rs {
			checkNames(t, ex, recorded, jobs, query{where: filepath.Base(file) + " " + r.Alert + r.Record, expr: r.Expr})
		}
	}
	// The jobs the run scraped are the ones prometheus.yml names.
	for job := range ex.Targets {
		if !slices.Contains(jobs, job) {
			t.Errorf("the run scraped job %s, which prometheus.yml does not", job)
		}
	}
	if t.Failed() {
		t.Logf("what the run exported: %s", ex.dump(t))
	}
}
