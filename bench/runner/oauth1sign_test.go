package main

import (
	"fmt"
	"strings"
	"testing"
)

// oauth1Report is a report of two connection counts with the oauth1
// route, its nginx baseline and, when sign > 0, BenchmarkSignGET.
func oauth1Report(sign float64) *report {
	r := &report{
		opts:    options{conns: []int{16, 64}},
		targets: []target{{name: "direct"}, {name: "nginx"}, {name: oauth1Target}},
		results: map[string]map[int][]sample{
			"direct":     {16: {{}}, 64: {{}}},
			"nginx":      {16: {{CPUus: 30}, {CPUus: 29}, {CPUus: 31}}, 64: {{CPUus: 28}}},
			oauth1Target: {16: {{CPUus: 31}, {CPUus: 30.9}, {CPUus: 31.1}}, 64: {{CPUus: 33}}},
		},
		goBench: []goBenchResult{
			// Same name, another package: not the signing cost.
			{pkg: "sidecar", name: signingBench, nsPerOp: 9000},
			{pkg: "oauth1", name: "BenchmarkSignGETString", nsPerOp: 8000},
		},
	}
	if sign > 0 {
		r.goBench = append(r.goBench, goBenchResult{pkg: "oauth1", name: signingBench, nsPerOp: sign * 1000})
	}
	return r
}

func TestUnsignedVerdict(t *testing.T) {
	for _, tc := range []struct {
		cpu, sign, ncpu float64
		met             bool
		measured        string
	}{
		{31, 1.5, 30, true, "31.0 − 1.5 = 29.5 vs 30.0 µs (0.98×)"},
		{31, 1, 30, true, "31.0 − 1.0 = 30.0 vs 30.0 µs (1.00×)"},
		{33, 1.5, 28, false, "33.0 − 1.5 = 31.5 vs 28.0 µs (1.12×)"},
	} {
		v := unsignedVerdict(16, tc.cpu, tc.sign, tc.ncpu)
		if v.met != tc.met || !v.known || v.measured != tc.measured {
			t.Errorf("unsignedVerdict(%v, %v, %v) = %+v, want met %v, measured %q", tc.cpu, tc.sign, tc.ncpu, v, tc.met, tc.measured)
		}
		if want := "credbroker-oauth1 without its signing: CPU per request at most nginx's (16 connections)"; v.target != want {
			t.Errorf("target %q, want %q", v.target, want)
		}
	}
}

// TestOAuth1SigningVerdicts: each connection count's plain oauth1 CPU
// line is followed by the line without the signing cost, computed from
// the oauth1 package's BenchmarkSignGET; without the Go benchmarks there
// is no such line.
func TestOAuth1SigningVerdicts(t *testing.T) {
	vs := oauth1Report(1.5).verdicts()
	var got []string
	for i, v := range vs {
		if strings.HasPrefix(v.target, oauth1Target+": CPU per request") {
			if i+1 >= len(vs) || !strings.HasPrefix(vs[i+1].target, oauth1Target+" without its signing") {
				t.Fatalf("the plain line %q is not followed by the one without signing", v.target)
			}
			w := vs[i+1]
			got = append(got, v.measured+" | "+w.measured)
			if v.met == w.met && strings.Contains(v.target, "(16 ") {
				t.Errorf("at 16 connections the total should miss and the line without signing meet: %+v %+v", v, w)
			}
		}
	}
	want := []string{
		"31.0 vs 30.0 µs (1.03×) | 31.0 − 1.5 = 29.5 vs 30.0 µs (0.98×)",
		"33.0 vs 28.0 µs (1.18×) | 33.0 − 1.5 = 31.5 vs 28.0 µs (1.12×)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("oauth1 verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, v := range oauth1Report(0).verdicts() {
		if strings.Contains(v.target, "without its signing") {
			t.Fatalf("a verdict without a signing cost: %+v", v)
		}
	}
}

func TestWriteOAuth1Signing(t *testing.T) {
	var b strings.Builder
	w := func(format string, a ...any) { b.WriteString(strings.TrimSpace(fmt.Sprintf(format, a...)) + "\n") }
	oauth1Report(1.5).writeOAuth1Signing(w)
	out := b.String()
	for _, want := range []string{"signing cost", "BenchmarkSignGET", "| 16 | 31.0 | 1.50 | 29.5 | 30.0 | 0.98× |", "| 64 | 33.0 | 1.50 | 31.5 | 28.0 | 1.12× |"} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	oauth1Report(0).writeOAuth1Signing(w)
	if !strings.Contains(b.String(), "Not measured") {
		t.Errorf("without the Go benchmarks the section should say so:\n%s", b.String())
	}
	b.Reset()
	r := oauth1Report(1.5)
	delete(r.results, oauth1Target)
	r.writeOAuth1Signing(w)
	if b.Len() != 0 {
		t.Errorf("a section without an oauth1 target:\n%s", b.String())
	}
}
