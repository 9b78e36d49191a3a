package main

import (
	"strings"
	"testing"
)

func TestDestinationVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       goBenchResult
		judged  bool
		met     bool
		wantTxt string
	}{
		{"hit under 1 µs", goBenchResult{pkg: "broker", name: "BenchmarkDestinationResolveHit/user", nsPerOp: 480, allocsPerOp: 0}, true, true, "480.0 ns/op, 0 allocs/op"},
		{"hit over 1 µs", goBenchResult{pkg: "broker", name: "BenchmarkDestinationResolveHit/user", nsPerOp: 2300, allocsPerOp: 2}, true, false, "2300.0 ns/op"},
		{"too many allocs", goBenchResult{pkg: "broker", name: "BenchmarkDestinationResolveHit/user", nsPerOp: 500, allocsPerOp: 3}, true, false, "3 allocs/op"},
		{"no-user is not the target", goBenchResult{pkg: "broker", name: "BenchmarkDestinationResolveHit/no-user", nsPerOp: 100}, false, false, ""},
		{"burst of one", goBenchResult{pkg: "broker", name: "BenchmarkDestinationColdBurst", extra: map[string]float64{"lookups/burst": 1}}, true, true, "1.00 lookups/burst"},
		{"burst of two", goBenchResult{pkg: "broker", name: "BenchmarkDestinationColdBurst", extra: map[string]float64{"lookups/burst": 2}}, true, false, "2.00"},
		{"other package", goBenchResult{pkg: "destination", name: "BenchmarkCacheGetHit/user/serial", nsPerOp: 400}, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := destinationVerdict(tc.b)
			if ok != tc.judged {
				t.Fatalf("judged %v, want %v", ok, tc.judged)
			}
			if !ok {
				return
			}
			if v.met != tc.met || !v.known {
				t.Fatalf("met %v known %v, want met %v: %+v", v.met, v.known, tc.met, v)
			}
			if !strings.Contains(v.measured, tc.wantTxt) {
				t.Fatalf("measured %q, want it to contain %q", v.measured, tc.wantTxt)
			}
		})
	}
}

func TestCacheHitVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       goBenchResult
		judged  bool
		met     bool
		wantTxt string
	}{
		{"Token hit under 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/tenant+scopes/serial", nsPerOp: 44.2}, true, true, "44.2 ns/op, 0 allocs/op"},
		{"Token hit at 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/provider/serial", nsPerOp: 50}, true, false, "50.0 ns/op"},
		{"Token hit over 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/tenant+scopes/serial", nsPerOp: 76.3}, true, false, "76.3 ns/op"},
		{"Handle hit under 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/handle/serial", nsPerOp: 35}, true, true, "35.0 ns/op"},
		{"an allocation", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/handle/serial", nsPerOp: 35, allocsPerOp: 1}, true, false, "1 allocs/op"},
		{"parallel under 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/provider/parallel", nsPerOp: 21}, true, true, "21.0 ns/op"},
		{"parallel over 50 ns", goBenchResult{pkg: "tokenclient", name: "BenchmarkCacheHit/tenant+scopes/parallel", nsPerOp: 61}, true, false, "61.0 ns/op"},
		{"other benchmark", goBenchResult{pkg: "tokenclient", name: "BenchmarkColdBurst", nsPerOp: 10}, false, false, ""},
		{"other package", goBenchResult{pkg: "destination", name: "BenchmarkCacheHit/user/serial", nsPerOp: 10}, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := cacheHitVerdict(tc.b)
			if ok != tc.judged {
				t.Fatalf("judged %v, want %v", ok, tc.judged)
			}
			if !ok {
				return
			}
			if v.met != tc.met || !v.known {
				t.Fatalf("met %v known %v, want met %v: %+v", v.met, v.known, tc.met, v)
			}
			if !strings.Contains(v.target, "under 50 ns, 0 allocs ("+tc.b.name+")") {
				t.Fatalf("target %q", v.target)
			}
			if !strings.Contains(v.measured, tc.wantTxt) {
				t.Fatalf("measured %q, want it to contain %q", v.measured, tc.wantTxt)
			}
		})
	}
}
