package main

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type report struct {
	opts      options
	started   time.Time
	cpus      int
	versions  map[string]string
	targets   []target
	results   map[string]map[int][]sample // target -> conns -> samples
	footprint *footprint
	goBench   []goBenchResult
	instr     []instrResult
	instrErr  string
	syscalls  *syscallProfile // cpuprofile.go
}

func (r *report) medianOf(t string, c int, pick func(sample) float64) float64 {
	var xs []float64
	for _, s := range r.results[t][c] {
		xs = append(xs, pick(s))
	}
	return median(xs)
}

func cpuOf(s sample) float64    { return s.CPUus }
func allocsOf(s sample) float64 { return s.Allocs }

// baseline is the nginx target doing the same job as a credbroker route.
func baseline(t string) string {
	if t == "credbroker-mtls" {
		return "nginx-mtls"
	}
	return "nginx"
}

func (r *report) medianRPS(t string, c int) float64 {
	var xs []float64
	for _, s := range r.results[t][c] {
		xs = append(xs, s.rps())
	}
	return median(xs)
}

func (r *report) medianLatency(t string, c int, pick func(sample) int64) float64 {
	var xs []float64
	for _, s := range r.results[t][c] {
		xs = append(xs, float64(pick(s)))
	}
	return median(xs)
}

func p50(s sample) int64 { return s.P50 }
func p90(s sample) int64 { return s.P90 }
func p99(s sample) int64 { return s.P99 }

// verdict is one performance target of DESIGN.md with what was measured.
type verdict struct {
	target, measured string
	met              bool
	known            bool
}

func (r *report) verdicts() []verdict {
	var vs []verdict
	minC := r.opts.conns[0]
	for _, t := range r.targets {
		if !strings.HasPrefix(t.name, "credbroker-") || t.name == tracedTarget {
			continue // DESIGN.md's targets are for the proxy without tracing
		}
		base := baseline(t.name)
		for _, c := range r.opts.conns {
			if c < 16 && len(r.opts.conns) > 1 {
				continue // the goal is stated for 16 and 64 connections
			}
			cpu, ncpu := r.medianOf(t.name, c, cpuOf), r.medianOf(base, c, cpuOf)
			vs = append(vs, verdict{
				target:   fmt.Sprintf("%s: CPU per request at most %s's (%d connections)", t.name, base, c),
				measured: fmt.Sprintf("%.1f vs %.1f µs (%.2f×)", cpu, ncpu, cpu/ncpu),
				met:      cpu <= ncpu, known: true,
			})
			if t.name == oauth1Target {
				if v, ok := r.oauth1UnsignedVerdict(c); ok {
					vs = append(vs, v) // oauth1sign.go
				}
			}
			ratio := r.medianRPS(t.name, c) / r.medianRPS(base, c)
			vs = append(vs, verdict{
				target:   fmt.Sprintf("%s: requests/s at least %s's (%d connections)", t.name, base, c),
				measured: fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", ratio, r.medianRPS(t.name, c), r.medianRPS(base, c)),
				met:      ratio >= 1, known: true,
			})
		}
	}
	added := (r.medianLatency("credbroker-bearer", minC, p99) - r.medianLatency("direct", minC, p99)) / 1000
	vs = append(vs, verdict{
		target:   fmt.Sprintf("p99 added latency at most 0.3 ms (bearer route vs direct, %d connection(s))", minC),
		measured: fmt.Sprintf("%.3f ms (p50 %+.3f ms)", added, (r.medianLatency("credbroker-bearer", minC, p50)-r.medianLatency("direct", minC, p50))/1000), met: added <= 0.3, known: true,
	})
	for _, b := range r.goBench {
		lname := strings.ToLower(b.name)
		if v, ok := destinationVerdict(b); ok {
			vs = append(vs, v)
			continue
		}
		if v, ok := cacheHitVerdict(b); ok {
			vs = append(vs, v)
			continue
		}
		switch {
		case strings.Contains(lname, "burst"):
			for u, v := range b.extra {
				if strings.Contains(u, "fetch") || strings.Contains(u, "request") {
					vs = append(vs, verdict{
						target:   "a cold burst of 1,000 callers makes exactly one token request (" + b.name + ")",
						measured: fmt.Sprintf("%.2f %s", v, u), met: v == 1, known: true,
					})
				}
			}
		case strings.Contains(lname, "mtls"):
			for u, v := range b.extra {
				if strings.Contains(u, "handshake") {
					vs = append(vs, verdict{
						target:   "token fetches over mTLS reuse connections (" + b.name + ")",
						measured: fmt.Sprintf("%.4f %s", v, u), met: v < 0.01, known: true,
					})
				}
			}
		}
	}
	if fp := r.footprint; fp != nil {
		mib, idle := float64(fp.loadRSSKiB)/1024, float64(fp.idleRSSKiB)/1024
		vs = append(vs, verdict{
			target:   "resident memory at most 20 MiB idle",
			measured: fmt.Sprintf("%.1f MiB", idle),
			met:      idle <= 20, known: true,
		}, verdict{
			target:   fmt.Sprintf("resident memory at most 25 MiB at %d requests/s", fp.loadRate),
			measured: fmt.Sprintf("%.1f MiB peak", mib),
			met:      mib <= 25, known: true,
		})
		var ds []float64
		for _, d := range fp.readyTimes {
			ds = append(ds, float64(d.Microseconds())/1000)
		}
		ready := median(ds)
		vs = append(vs, verdict{
			target:   "ready within 200 ms of start when the auth server answers",
			measured: fmt.Sprintf("%.0f ms (median of %d starts, process start to /readyz 200)", ready, len(ds)),
			met:      ready < 200, known: true,
		})
	}
	return vs
}

// cacheHitVerdict judges the token cache hit target of issue 21 (under
// 50 ns in all, with the wall clock read that a hit makes, and no
// allocation) from the token client's BenchmarkCacheHit: Client.Token for
// the provider and for a tenant with scopes, and a Handle's Token, each
// serial (one caller: what the target is about) and parallel (per call
// across all cores, held to the same target).
func cacheHitVerdict(b goBenchResult) (verdict, bool) {
	if b.pkg != "tokenclient" || !strings.HasPrefix(b.name, "BenchmarkCacheHit/") {
		return verdict{}, false
	}
	return verdict{
		target:   "token cache hit under 50 ns, 0 allocs (" + b.name + ")",
		measured: fmt.Sprintf("%.1f ns/op, %.0f allocs/op", b.nsPerOp, b.allocsPerOp),
		met:      b.nsPerOp < 50 && b.allocsPerOp == 0, known: true,
	}, true
}

// destinationVerdict judges the destination targets of issue 20 from the
// broker package's benchmarks: a cached destination with a user token adds
// under 1 µs and at most 2 allocations (the resolver on a hit: what a
// destination route does beyond a bearer route's cached token), and a cold
// burst of 1,000 requests makes one lookup.
func destinationVerdict(b goBenchResult) (verdict, bool) {
	switch {
	case b.pkg == "broker" && strings.HasPrefix(b.name, "BenchmarkDestinationResolveHit/user"):
		return verdict{
			target:   "cached destination route (user token) adds under 1 µs, at most 2 allocs (" + b.name + ")",
			measured: fmt.Sprintf("%.1f ns/op, %.0f allocs/op", b.nsPerOp, b.allocsPerOp),
			met:      b.nsPerOp < 1000 && b.allocsPerOp <= 2, known: true,
		}, true
	case b.pkg == "broker" && strings.HasPrefix(b.name, "BenchmarkDestinationColdBurst"):
		v, ok := b.extra["lookups/burst"]
		if !ok {
			return verdict{}, false
		}
		return verdict{
			target:   "a cold burst of 1,000 requests makes one destination lookup (" + b.name + ")",
			measured: fmt.Sprintf("%.2f lookups/burst", v), met: v == 1, known: true,
		}, true
	}
	return verdict{}, false
}

func (r *report) write(path string) error {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# credbroker benchmarks\n\n")
	if r.opts.smoke {
		w("**Smoke run** (harness check only: 1 s runs, one round; these numbers mean nothing).\n\n")
	}
	w("Generated by `make bench` on %s. Machine: %d CPUs, everything on loopback; %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.cpus, versionsLine(r.versions))
	w("Each wrk run lasts %s; the %d targets are interleaved in every one of %d rounds (order rotated each round), and every figure below is the median over the rounds. ",
		r.opts.duration, len(r.targets), r.opts.rounds)
	w("The upstream is a Go server returning a %d-byte body with keep-alive; nginx is a reverse proxy that adds a fixed `Authorization` header — `Bearer` and a token of the bearer route's binding, fetched from the mock once with `credbroker token`, so that it sends upstream the bytes the bearer route sends — with an upstream keep-alive pool; `direct` is wrk calling the upstream itself with that same header, as an app would, so that added latency compares the same request at the upstream (the baseline a user would otherwise pick; `nginx-mtls` presents the paired client certificate to the TLS upstream with `proxy_ssl_certificate`, the mtls route's job); credbroker runs with `GOMAXPROCS=2` and one route per kind, the bearer token cached (the oauth1 route is compared with nginx adding that header; its signing cost is reported apart below). The load generator, the proxies and the upstream share the same %d cores, so absolute numbers are lower than on separate machines; the ratios are what to read. CPU per request is the proxy's own (every thread of credbroker, or nginx's master and workers, from /proc/PID/task/*/schedstat) divided by the requests wrk completed: it is the headline figure, stable on a shared machine where requests/s are not. Allocations per request are credbroker's `go_memstats_mallocs_total` over the run.\n\n", len(body), r.cpus)

	w("%s", r.fasthttpIntro())
	w("## Targets\n\n| target (DESIGN.md) | measured | met |\n|---|---|---|\n")
	for _, v := range r.verdicts() {
		mark := "no"
		if v.met {
			mark = "yes"
		}
		w("| %s | %s | %s |\n", v.target, v.measured, mark)
	}

	svgPath := strings.TrimSuffix(path, ".md") + ".svg"
	w("\n## CPU per request, throughput and latency\n\n![CPU per request](%s)\n\n", filepath.Base(svgPath))
	w("| target | connections | req/s | req/s vs its nginx | CPU µs/request | nginx CPU µs/request | p50 ms | p99 ms | p50 added vs direct, ms | p99 added vs direct, ms | allocs/request |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.opts.conns {
		for _, t := range r.targets {
			rps := r.medianRPS(t.name, c)
			base := baseline(t.name)
			cpu, ncpu, allocs := "–", "–", "–"
			if t.name != "direct" {
				cpu = fmt.Sprintf("%.1f", r.medianOf(t.name, c, cpuOf))
				ncpu = fmt.Sprintf("%.1f", r.medianOf(base, c, cpuOf))
			}
			if strings.HasPrefix(t.name, "credbroker-") {
				allocs = fmt.Sprintf("%.1f", r.medianOf(t.name, c, allocsOf))
			}
			w("| %s | %d | %.0f | %.2f | %s | %s | %.3f | %.3f | %+.3f | %+.3f | %s |\n", t.name, c, rps, rps/r.medianRPS(base, c), cpu, ncpu,
				r.medianLatency(t.name, c, p50)/1000, r.medianLatency(t.name, c, p99)/1000,
				(r.medianLatency(t.name, c, p50)-r.medianLatency("direct", c, p50))/1000,
				(r.medianLatency(t.name, c, p99)-r.medianLatency("direct", c, p99))/1000, allocs)
		}
	}
	r.writeOAuth1Signing(w) // oauth1sign.go
	r.writeTracing(w)
	r.writeCPUProfile(w)
	w("\n## Instructions per request\n\n")
	if r.instrErr != "" {
		w("Not measured: %s.\n", r.instrErr)
	} else {
		refC := r.opts.conns[len(r.opts.conns)-1]
		for _, c := range r.opts.conns {
			if c == 16 {
				refC = c
			}
		}
		w("`credbroker run` under valgrind's callgrind (`GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1`): counters zeroed after a warm-up, then requests on four keep-alive connections at once, every thread of credbroker counted (the Go runtime's included). Independent of what else the machine is doing, so a change can be judged by it without noise; the CPU time per request above is beside it.\n\n| route | instructions/request | requests counted | CPU µs/request at %d connections |\n|---|---:|---:|---:|\n", refC)
		for _, in := range r.instr {
			w("| %s | %.0f | %d | %.1f |\n", in.route, in.perReq, in.requests, r.medianOf("credbroker-"+in.route, refC, cpuOf))
		}
	}

	if fp := r.footprint; fp != nil {
		w("\n## Footprint\n\n")
		w("- Resident memory (VmRSS) of `credbroker run` (built without cgo, as the release binaries are): %.1f MiB idle after start; peak %.1f MiB while serving %d requests/s through the bearer route for %s (%d requests, %d failed).\n",
			float64(fp.idleRSSKiB)/1024, float64(fp.loadRSSKiB)/1024, fp.loadRate, fp.pacedDuration, fp.loadSent, fp.loadFailed)
		var ds []string
		for _, d := range fp.readyTimes {
			ds = append(ds, fmt.Sprintf("%.0f", float64(d.Microseconds())/1000))
		}
		w("- Start to `/readyz` = 200 with the mock answering (ms, each start): %s.\n", strings.Join(ds, ", "))
	}

	if len(r.goBench) > 0 {
		w("\n## Go benchmarks\n\n`go test -bench . -benchmem`, median of %d runs each.\n\n| package | benchmark | ns/op | B/op | allocs/op | other |\n|---|---|---:|---:|---:|---|\n", r.goBench[0].runs)
		for _, g := range r.goBench {
			var extra []string
			keys := make([]string, 0, len(g.extra))
			for k := range g.extra {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				extra = append(extra, fmt.Sprintf("%.4g %s", g.extra[k], k))
			}
			w("| %s | %s | %.1f | %.0f | %.0f | %s |\n", g.pkg, g.name, g.nsPerOp, g.bytesPerOp, g.allocsPerOp, strings.Join(extra, ", "))
		}
	}
	w("\nRerun with `make bench` (about 9 minutes); `bench/run.sh --rounds 3 --duration 3s --conns 1,32` for a quicker look.\n")

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(svgPath, []byte(r.svg()), 0o644); err != nil {
		return err
	}
	logf("wrote %s and %s", path, svgPath)
	return nil
}

func versionsLine(v map[string]string) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+v[k])
	}
	return strings.Join(parts, ", ")
}

// svg draws grouped horizontal bars: median CPU µs per request of each
// proxy target, one group per connection count (lower is better).
func (r *report) svg() string {
	const width, left, barH, gap = 760.0, 170.0, 16.0, 4.0
	var targets []target
	for _, t := range r.targets {
		if t.name != "direct" {
			targets = append(targets, t)
		}
	}
	maxV := 1.0
	for _, t := range targets {
		for _, c := range r.opts.conns {
			if v := r.medianOf(t.name, c, cpuOf); v > maxV {
				maxV = v
			}
		}
	}
	colors := []string{"#2ca02c", "#98df8a", "#7f7f7f", "#1f77b4", "#9467bd", "#ff7f0e", "#d62728", "#8c564b", "#e377c2"}
	var b strings.Builder
	y := 40.0
	groupH := float64(len(targets))*(barH+gap) + 28
	height := 40 + groupH*float64(len(r.opts.conns)) + 20
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">Proxy CPU time per request, µs (median), lower is better</text>`+"\n")
	for _, c := range r.opts.conns {
		fmt.Fprintf(&b, `<text x="10" y="%.0f" font-weight="bold">%d connection(s)</text>`+"\n", y+12, c)
		y += 20
		for i, t := range targets {
			v := r.medianOf(t.name, c, cpuOf)
			wbar := (width - left - 90) * v / maxV
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, left-6, y+barH-4, html.EscapeString(t.name))
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/>`, left, y, wbar, barH, colors[i%len(colors)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%.1f</text>`+"\n", left+wbar+4, y+barH-4, v)
			y += barH + gap
		}
		y += 8
	}
	b.WriteString("</svg>\n")
	return b.String()
}
