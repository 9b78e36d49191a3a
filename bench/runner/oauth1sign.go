package main

import "fmt"

// The oauth1 route does nginx's job (add an Authorization header) plus an
// OAuth 1.0a signature per request. Issue 16 asks for its signing cost to
// be reported apart: the oauth1 package's BenchmarkSignGET is one
// signature of a bodyless GET as the fast path makes it, and the route is
// also judged by its CPU per request without that cost.

const (
	oauth1Target    = "credbroker-oauth1"
	signingBenchPkg = "oauth1"
	signingBench    = "BenchmarkSignGET"
)

// signingCost is BenchmarkSignGET's median in µs per signature, when the
// Go benchmarks ran.
func (r *report) signingCost() (float64, bool) {
	for _, b := range r.goBench {
		if b.pkg == signingBenchPkg && b.name == signingBench && b.nsPerOp > 0 {
			return b.nsPerOp / 1000, true
		}
	}
	return 0, false
}

// oauth1UnsignedVerdict is the oauth1 route's CPU per request without its
// signing at c connections, beside the plain line (the honest total).
func (r *report) oauth1UnsignedVerdict(c int) (verdict, bool) {
	sign, ok := r.signingCost()
	if !ok || len(r.results[oauth1Target][c]) == 0 {
		return verdict{}, false
	}
	return unsignedVerdict(c, r.medianOf(oauth1Target, c, cpuOf), sign, r.medianOf(baseline(oauth1Target), c, cpuOf)), true
}

// unsignedVerdict judges CPU per request minus the signing cost against
// nginx's (all in µs).
func unsignedVerdict(c int, cpu, sign, ncpu float64) verdict {
	without := cpu - sign
	return verdict{
		target:   fmt.Sprintf("%s without its signing: CPU per request at most %s's (%d connections)", oauth1Target, baseline(oauth1Target), c),
		measured: fmt.Sprintf("%.1f − %.1f = %.1f vs %.1f µs (%.2f×)", cpu, sign, without, ncpu, without/ncpu),
		met:      without <= ncpu, known: true,
	}
}

// writeOAuth1Signing writes the oauth1 route's signing cost beside its
// CPU per request at every connection count.
func (r *report) writeOAuth1Signing(w func(string, ...any)) {
	if _, ran := r.results[oauth1Target]; !ran {
		return
	}
	w("\n### The oauth1 route's signing cost\n\n")
	sign, ok := r.signingCost()
	if !ok {
		w("Not measured: the Go benchmarks did not run (`--go-bench=false`), so there is no `%s` figure.\n", signingBench)
		return
	}
	w("The nginx baseline adds a fixed header, the oauth1 route signs every request (HMAC-SHA1 over the RFC 5849 base string, a fresh nonce), so the route is judged twice: by its CPU per request as measured (the honest total) and by that minus the signing cost, which is `%s` of the %s package below (one signature of a bodyless GET as the fast path makes it, on one goroutine), against nginx's.\n\n", signingBench, signingBenchPkg)
	w("| connections | %s CPU µs/request | signing µs/request | without signing | nginx CPU µs/request | without signing vs nginx |\n|---:|---:|---:|---:|---:|---:|\n", oauth1Target)
	for _, c := range r.opts.conns {
		cpu, ncpu := r.medianOf(oauth1Target, c, cpuOf), r.medianOf(baseline(oauth1Target), c, cpuOf)
		w("| %d | %.1f | %.2f | %.1f | %.1f | %.2f× |\n", c, cpu, sign, cpu-sign, ncpu, (cpu-sign)/ncpu)
	}
}
