package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// The observability files (deploy/observability/) are checked here, against a worker
// started in-process, because a dashboard or an alert that names a metric or label the
// worker does not expose shows nothing and fires never, without any error.
const (
	observabilityDir   = "../../../deploy/observability/"
	alertRulesFile     = observabilityDir + "alerts.rules.yml"
	prometheusRuleFile = observabilityDir + "prometheusrule.yaml"
	dashboardFile      = observabilityDir + "apiops-worker-dashboard.json"
	composeScrapeFile  = observabilityDir + "prometheus.yml"
	runbookURLPrefix   = "https://github.com/apiops-worker/apiops-worker/blob/main/docs/alerts.md#"
)

var promqlParser = parser.NewParser(parser.Options{})

// parseAlertRules reads the plain rules file with Prometheus's own parser and
// validation, as Prometheus does when it loads rule_files.
func parseAlertRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertRulesFile, false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

func TestAlertRules(t *testing.T) {
	groups := parseAlertRules(t)
	want := []string{"ApiopsWorkerPaused", "ApiopsWorkerDeadLettersRising", "ApiopsWorkerStuck", "ApiopsWorkerDown", "ApiopsWorkerNoActiveInstance",
		"ApiopsCertificateExpiresSoon", "ApiopsCertificateExpiryUnread"}
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("recording rule %q: the file holds alerts only", r.Record)
				continue
			}
			names = append(names, r.Alert)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
		}
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
}

// TestRunbookURLsPointAtRunbookHeadings: each alert's runbook_url ends in the anchor
// GitHub gives a heading of docs/alerts.md, so that the link lands on the runbook.
func TestRunbookURLsPointAtRunbookHeadings(t *testing.T) {
	readme, err := os.ReadFile("../../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inCode := false
	for line := range strings.Lines(string(readme)) {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	for _, g := range parseAlertRules(t).Groups {
		for _, r := range g.Rules {
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookURLPrefix)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is not %s<a heading of docs/alerts.md>", r.Alert, url, runbookURLPrefix)
			}
		}
	}
}

// githubAnchor is the id GitHub gives a Markdown heading: lower case, punctuation
// dropped, spaces as hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestPrometheusRuleHoldsTheRulesFileGroups(t *testing.T) {
	var plain struct {
		Groups any `yaml:"groups"`
	}
	var resource struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	readYAML(t, alertRulesFile, &plain)
	readYAML(t, prometheusRuleFile, &resource)
	if resource.APIVersion != "monitoring.coreos.com/v1" || resource.Kind != "PrometheusRule" {
		t.Errorf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, resource.APIVersion, resource.Kind)
	}
	if plain.Groups == nil || !reflect.DeepEqual(plain.Groups, resource.Spec.Groups) {
		t.Errorf("spec.groups of %s differ from the groups of %s: change both", prometheusRuleFile, alertRulesFile)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPromtoolVersionMatchesLibrary: make check-alerts installs promtool at
// PROMTOOL_VERSION; the rules are parsed here with the library from go.mod. The same
// version for both means both judge the rules alike.
func TestPromtoolVersionMatchesLibrary(t *testing.T) {
	versionIn := func(file, pattern string) string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(pattern).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: nothing matches %s", file, pattern)
		}
		return string(m[1])
	}
	promtool := versionIn("../../../Makefile", `(?m)^PROMTOOL_VERSION\s*:?=\s*(\S+)`)
	library := versionIn("../../../go.mod", `(?m)^\s*github\.com/prometheus/prometheus (\S+)`)
	if promtool != library {
		t.Errorf("Makefile PROMTOOL_VERSION %s, go.mod github.com/prometheus/prometheus %s", promtool, library)
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string           `json:"uid"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"` // a collapsed row's
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels lists the panels, those inside collapsed rows too.
func (d dashboard) allPanels() []dashboardPanel {
	var out []dashboardPanel
	var add func([]dashboardPanel)
	add = func(ps []dashboardPanel) {
		for _, p := range ps {
			out = append(out, p)
			add(p.Panels)
		}
	}
	add(d.Panels)
	return out
}

func TestDashboardPanels(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, schemaVersion %d: want a uid and schemaVersion 36 or later", d.UID, d.SchemaVersion)
	}
	variables := map[string]string{}
	for _, v := range d.Templating.List {
		variables[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query", "type": "query"} {
		if variables[name] != typ {
			t.Errorf("variable %s: type %q, want %q", name, variables[name], typ)
		}
	}
	ids := map[int]string{}
	fixedRange := regexp.MustCompile(`\[\d`)
	panels := d.allPanels()
	if len(panels) < 10 {
		t.Errorf("%d panels", len(panels))
	}
	for _, p := range panels {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		for _, target := range p.Targets {
			if strings.TrimSpace(target.Expr) == "" {
				t.Errorf("panel %q: a target without expr", p.Title)
			}
			if target.Datasource != nil && target.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target datasource %+v", p.Title, target.Datasource)
			}
			// A fixed window is too short for a long scrape interval and hides detail
			// when zoomed in; Grafana's $__rate_interval follows both.
			if fixedRange.MatchString(target.Expr) {
				t.Errorf("panel %q: a fixed range in %s; use $__rate_interval or $__range", p.Title, target.Expr)
			}
		}
	}
}

// The gauges that read -1 while unknown (a standby, a worker cut off from NATS): a
// query that does not filter them out shows -1 as if it were a count or an age.
var unknownAsMinusOne = []string{
	"apiops_worker_consumer_pending_commands",
	"apiops_worker_consumer_ack_pending_commands",
	"apiops_worker_oldest_pending_age_seconds",
}

// grafanaVariables stands in for Grafana's substitution, with values of the right
// shape, so that the dashboard's queries can be parsed.
var grafanaVariables = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "6h",
	"job":             "apiops-worker",
	"instance":        "worker:9090",
	"type":            "keystore.create",
}

var grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

func substituteGrafanaVariables(expr string) (string, error) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(ref string) string {
		m := grafanaVariable.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		value, ok := grafanaVariables[name]
		if !ok {
			unknown = append(unknown, ref)
		}
		return value
	})
	if unknown != nil {
		return "", fmt.Errorf("unknown Grafana variables %v", unknown)
	}
	return out, nil
}

// A query to check, and where it comes from.
type namedQuery struct{ where, expr string }

func dashboardQueries(t *testing.T) []namedQuery {
	t.Helper()
	d := readDashboard(t)
	var out []namedQuery
	for _, p := range d.allPanels() {
		for _, target := range p.Targets {
			out = append(out, namedQuery{fmt.Sprintf("dashboard panel %q", p.Title), target.Expr})
		}
	}
	// Variables are label_values(<selector>, <label>) queries: check the selector as a
	// query and the label as one it must carry.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		out = append(out, namedQuery{"dashboard variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	return out
}

// TestQueriesUseExposedMetrics parses every query of the alerts and the dashboard and
// checks each series it selects, and each label it groups by, against the /metrics
// of a fresh worker.
func TestQueriesUseExposedMetrics(t *testing.T) {
	families := exposedLabels(t, freshWorkerMetrics(t))
	scrapeJob := composeScrapeJob(t)

	var queries []namedQuery
	for _, g := range parseAlertRules(t).Groups {
		for _, r := range g.Rules {
			queries = append(queries, namedQuery{"alert " + r.Alert, r.Expr})
		}
	}
	queries = append(queries, dashboardQueries(t)...)
	for _, q := range queries {
		expr, err := substituteGrafanaVariables(q.expr)
		if err == nil {
			var parsed parser.Expr
			parsed, err = promqlParser.ParseExpr(expr)
			if err == nil {
				err = checkSelectors(parsed, families, strings.HasPrefix(q.where, "alert"), scrapeJob)
			}
		}
		if err != nil {
			t.Errorf("%s: %v\n\t%s", q.where, err, q.expr)
		}
	}
}

// checkSelectors reports a selector of a series the worker does not expose, a label
// it does not carry, a grouping by such a label, and a gauge that reads -1 while
// unknown used without filtering that out. Alerts must select the scrape job.
func checkSelectors(expr parser.Expr, families map[string]map[string]bool, isAlert bool, scrapeJob string) error {
	var problems []string
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			allowed, err := selectorLabels(n, families)
			if err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					continue
				}
				if !allowed[m.Name] {
					problems = append(problems, fmt.Sprintf("%s has no label %s", n.Name, m.Name))
				}
				if isAlert && m.Name == "job" && (m.Type != labels.MatchEqual || m.Value != scrapeJob) {
					problems = append(problems, fmt.Sprintf("%s selects %s, want job=%q as %s scrapes", n.Name, m, scrapeJob, composeScrapeFile))
				}
			}
			if isAlert && !slices.ContainsFunc(n.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == "job" }) {
				problems = append(problems, fmt.Sprintf("%s does not select the job", n.Name))
			}
			if slices.Contains(unknownAsMinusOne, n.Name) && !filtersUnknown(path) {
				problems = append(problems, fmt.Sprintf("%s reads -1 while unknown: filter it (>= 0, > 0) or take the max", n.Name))
			}
		case *parser.AggregateExpr:
			if n.Without {
				return nil
			}
			var inner []*parser.VectorSelector
			parser.Inspect(n.Expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					inner = append(inner, vs)
				}
				return nil
			})
			for _, vs := range inner {
				allowed, err := selectorLabels(vs, families)
				if err != nil {
					continue // reported at the selector
				}
				for _, label := range n.Grouping {
					if !allowed[label] {
						problems = append(problems, fmt.Sprintf("grouped by %s, which %s does not carry", label, vs.Name))
					}
				}
			}
		}
		return nil
	})
	if problems != nil {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// TestCheckSelectorsReports: the check above passes only if it can fail; each query
// here has one mistake it must name, against a small exposition.
func TestCheckSelectorsReports(t *testing.T) {
	families := exposedLabels(t, `# TYPE apiops_worker_commands_finished_total counter
apiops_worker_commands_finished_total{type="keystore.create",status="succeeded"} 0
# TYPE apiops_worker_publish_to_result_seconds histogram
apiops_worker_publish_to_result_seconds_bucket{type="keystore.create",status="succeeded",le="+Inf"} 0
apiops_worker_publish_to_result_seconds_sum{type="keystore.create",status="succeeded"} 0
apiops_worker_publish_to_result_seconds_count{type="keystore.create",status="succeeded"} 0
# TYPE apiops_worker_consumer_pending_commands gauge
apiops_worker_consumer_pending_commands -1
`)
	for _, c := range []struct {
		expr    string
		isAlert bool
		want    string // in the error; "" for none
	}{
		{`sum by (le, type) (rate(apiops_worker_publish_to_result_seconds_bucket{job="j", type="x"}[1m]))`, false, ""},
		{`max(apiops_worker_consumer_pending_commands >= 0)`, false, ""},
		{`up{job="apiops-worker"} == 0`, true, ""},
		{`rate(apiops_worker_commands_total[1m])`, false, "apiops_worker_commands_total is not exposed"},
		{`apiops_worker_commands_finished_total{code="x"}`, false, "has no label code"},
		{`apiops_worker_publish_to_result_seconds_sum{le="1"}`, false, "has no label le"},
		{`sum by (reason) (apiops_worker_commands_finished_total)`, false, "grouped by reason"},
		{`sum(apiops_worker_consumer_pending_commands)`, false, "reads -1 while unknown"},
		{`apiops_worker_commands_finished_total > 0`, true, "does not select the job"},
		{`up{job="other"} == 0`, true, `want job="apiops-worker"`},
	} {
		parsed, err := promqlParser.ParseExpr(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		err = checkSelectors(parsed, families, c.isAlert, "apiops-worker")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.expr, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one with %q", c.expr, err, c.want)
		}
	}
}

// filtersUnknown: the selector sits under a comparison with a non-negative number
// (pending > 0, age >= 0) or under max, both of which leave -1 out as long as one
// instance knows the value.
func filtersUnknown(path []parser.Node) bool {
	for _, node := range path {
		switch n := node.(type) {
		case *parser.BinaryExpr:
			if n.Op.IsComparisonOperator() {
				if lit, ok := n.RHS.(*parser.NumberLiteral); ok && lit.Val >= 0 {
					return true
				}
			}
		case *parser.AggregateExpr:
			if n.Op == parser.MAX {
				return true
			}
		}
	}
	return false
}

// selectorLabels is the set of labels a selected series may carry: its family's,
// le on a histogram's buckets, and the target labels Prometheus adds. up is
// Prometheus's own series for each target.
func selectorLabels(vs *parser.VectorSelector, families map[string]map[string]bool) (map[string]bool, error) {
	allowed := map[string]bool{"job": true, "instance": true}
	if vs.Name == "up" {
		return allowed, nil
	}
	family, ok := families[vs.Name]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(vs.Name, suffix); cut {
				if family, ok = families[base]; ok && suffix == "_bucket" {
					allowed["le"] = true
				}
				break
			}
		}
	}
	if !ok {
		return nil, fmt.Errorf("%s is not exposed by the worker", vs.Name)
	}
	for label := range family {
		allowed[label] = true
	}
	return allowed, nil
}

// exposedLabels parses Prometheus text exposition: each family's name and the label
// names its series carry. A histogram family is named without _bucket, _sum, _count.
func exposedLabels(t *testing.T, exposition string) map[string]map[string]bool {
	t.Helper()
	textParser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := textParser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	families := map[string]map[string]bool{}
	for name, family := range parsed {
		labelNames := map[string]bool{}
		for _, m := range family.GetMetric() {
			for _, l := range m.GetLabel() {
				labelNames[l.GetName()] = true
			}
		}
		families[name] = labelNames
	}
	return families
}

// composeScrapeJob is the job name deploy/observability/prometheus.yml scrapes the
// worker under, which the alerts select.
func composeScrapeJob(t *testing.T) string {
	t.Helper()
	var config struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, composeScrapeFile, &config)
	if len(config.ScrapeConfigs) != 1 {
		t.Fatalf("%s: %d scrape configs, want the worker's alone", composeScrapeFile, len(config.ScrapeConfigs))
	}
	return config.ScrapeConfigs[0].JobName
}

// freshWorkerMetrics starts `apiops-worker --demo --watch-projects MyProject`
// in-process (embedded NATS and the simulator), sends it no command, and returns its
// /metrics once it holds the lease and the expiry watch has read: what a dashboard
// sees of a worker that has done nothing yet.
func freshWorkerMetrics(t *testing.T) string {
	t.Helper()
	d := startDemo(t, map[string]string{"APIOPS_WORKER_WATCH_PROJECTS": "MyProject"})
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + d.httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if parseMetrics(string(body))["apiops_worker_active"] == 1 && strings.Contains(string(body), "apiops_worker_expiry_last_read_timestamp_seconds{") {
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not become active; /metrics:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
