// Package test checks docs/observability: every PromQL expression of the
// Grafana dashboard and of the alerting rules parses (with Prometheus's own
// parser), names only metrics and labels a real credbroker exports (a
// /metrics scrape of the built binary, run against `credbroker mock`, after
// traffic that makes every series appear), and the PrometheusRule CRD holds
// exactly the rules of the plain rules file. It is a module of its own so
// the Prometheus dependency stays out of the main module. `promtool check
// rules` and `promtool test rules` run from scripts/observability-test.sh.
package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

const docs = ".."

// An expression found in a file: where, and the PromQL.
type expr struct {
	where  string
	promql string
}

// grafanaVars are the Grafana variables an expression may use, replaced as
// Grafana does before the query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

func dashboardExprs(t *testing.T) []expr {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(docs, "credbroker-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos *struct {
				H, W, X, Y int
			} `json:"gridPos"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	// What Grafana's import needs: a schema version, a title, a uid, panels
	// with unique ids and a place on the grid.
	if d.SchemaVersion < 30 || d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard: schemaVersion %d, title %q, uid %q, %d panels", d.SchemaVersion, d.Title, d.UID, len(d.Panels))
	}
	var out []expr
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d is missing or not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, expr{fmt.Sprintf("dashboard panel %q target %s", p.Title, tg.RefID), grafanaVars.Replace(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		// label_values(EXPR, label) is Grafana's, not PromQL: check EXPR.
		m := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`).FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		out = append(out, expr{"dashboard variable " + v.Name, m[1]})
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string           `yaml:"name"`
		Rules []map[string]any `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(docs, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func ruleExprs(t *testing.T) []expr {
	t.Helper()
	var plain ruleFile
	readYAML(t, "prometheus-rules.yaml", &plain)
	var crd struct {
		APIVersion string         `yaml:"apiVersion"`
		Kind       string         `yaml:"kind"`
		Metadata   map[string]any `yaml:"metadata"`
		Spec       ruleFile       `yaml:"spec"`
	}
	readYAML(t, "prometheusrule.yaml", &crd)
	if crd.APIVersion != "monitoring.coreos.com/v1" || crd.Kind != "PrometheusRule" || crd.Metadata["name"] == nil {
		t.Errorf("prometheusrule.yaml: apiVersion %q kind %q metadata %v", crd.APIVersion, crd.Kind, crd.Metadata)
	}
	if !reflect.DeepEqual(plain.Groups, crd.Spec.Groups) {
		t.Errorf("prometheusrule.yaml's spec.groups differ from prometheus-rules.yaml's groups")
	}
	var out []expr
	alerts := map[string]bool{}
	for _, g := range plain.Groups {
		for _, r := range g.Rules {
			name, _ := r["alert"].(string)
			if name == "" || alerts[name] {
				t.Errorf("group %s: alert name %q missing or repeated", g.Name, name)
			}
			alerts[name] = true
			lbls, _ := r["labels"].(map[string]any)
			if s, _ := lbls["severity"].(string); s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q", name, s)
			}
			ann, _ := r["annotations"].(map[string]any)
			if ann["summary"] == nil || ann["description"] == nil {
				t.Errorf("alert %s: summary and description are required", name)
			}
			e, _ := r["expr"].(string)
			out = append(out, expr{"alert " + name, e})
		}
	}
	// The alerts the docs promise.
	for _, want := range []string{"CredbrokerNotReady", "CredbrokerCertificateExpiringSoon", "CredbrokerCertificateExpiring",
		"CredbrokerCertificateNeedsToken", "CredbrokerCertificateRevoked", "CredbrokerCertificateRenewalFailing",
		"CredbrokerTokenFetchFailing", "CredbrokerTokenRefreshFailing", "CredbrokerEgressRefusalSpike", "CredbrokerInboundRefusalSpike"} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
	return out
}

// selector is one metric a PromQL expression reads and the labels its
// matchers name.
type selector struct {
	metric string
	labels []string
}

// selectors parses e and returns what it selects.
func selectors(e string) ([]selector, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(e)
	if err != nil {
		return nil, err
	}
	var out []selector
	var bad error
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{metric: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					bad = fmt.Errorf("%s: select metrics by exact name", vs)
				}
				s.metric = m.Value
				continue
			}
			s.labels = append(s.labels, m.Name)
		}
		out = append(out, s)
		return nil
	})
	return out, bad
}

// targetLabels are added by Prometheus (or the Operator's relabelling), not
// by credbroker.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

func TestExpressionsParseAndNameExportedMetrics(t *testing.T) {
	all := append(dashboardExprs(t), ruleExprs(t)...)
	if len(all) < 30 {
		t.Fatalf("only %d expressions found", len(all))
	}
	scraped := scrapeRunningSidecar(t)
	used := map[string]bool{}
	for _, x := range all {
		sels, err := selectors(x.promql)
		if err != nil {
			t.Errorf("%s: %q: %v", x.where, x.promql, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q selects no metric", x.where, x.promql)
		}
		for _, s := range sels {
			if !strings.HasPrefix(s.metric, "credbroker_") {
				t.Errorf("%s: %q is not a credbroker metric", x.where, s.metric)
				continue
			}
			fam, ok := scraped.family(s.metric)
			if !ok {
				t.Errorf("%s: metric %s is not in a /metrics scrape of credbroker", x.where, s.metric)
				continue
			}
			used[fam] = true
			for _, l := range s.labels {
				if slices.Contains(targetLabels, l) {
					continue
				}
				if !scraped.hasLabel(fam, l) {
					t.Errorf("%s: %s has no label %q (it has %v)", x.where, fam, l, scraped.labels[fam])
				}
			}
		}
	}
	// Every credbroker metric is on the dashboard or in an alert, so a new
	// metric cannot be forgotten here.
	var unused []string
	for fam := range scraped.labels {
		if strings.HasPrefix(fam, "credbroker_") && !used[fam] {
			unused = append(unused, fam)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("metrics neither on the dashboard nor in an alert: %v", unused)
	}
}

// TestSelectorsCatchWrongNames proves the check can fail: a misspelt
// metric and an unknown label are found.
func TestSelectorsCatchWrongNames(t *testing.T) {
	s := scrape{labels: map[string][]string{"credbroker_ready": nil, "credbroker_proxy_requests_total": {"code", "route"}}, types: map[string]string{}}
	sels, err := selectors(`sum by (route) (rate(credbroker_proxy_request_total{rout="x"}[5m])) + credbroker_ready`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.family(sels[0].metric); ok {
		t.Errorf("credbroker_proxy_request_total was accepted")
	}
	if s.hasLabel("credbroker_proxy_requests_total", "rout") {
		t.Errorf("label rout was accepted")
	}
	if _, err := selectors(`rate(credbroker_ready[$__rate_interval])`); err == nil {
		t.Errorf("an expression with an unreplaced Grafana variable parsed")
	}
}
