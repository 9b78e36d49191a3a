package sidecar

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"runtime"
	"testing"

	"github.com/credbroker/credbroker/oauth1"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFastPathOAuth1Allocations: an oauth1 request on the fast path
// allocates at most one object more than a request to a route that adds
// no credential (issue 16: signing used to cost a dozen allocations per
// request). Both routes are on one server, driven over one keep-alive
// connection; the process's mallocs are counted over each run.
func TestFastPathOAuth1Allocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	s, err := oauth1.NewSigner("consumer-key", "consumer-secret")
	if err != nil {
		t.Fatal(err)
	}
	up := fixedUpstream(t)
	cfg, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes:\n"+
		"  - {name: n, upstream: 'http://"+up+"', auth: {type: none}}\n"+
		"  - {name: o, upstream: 'http://"+up+"', auth: {type: oauth1, key_file: /k, secret_file: /s}}\n"), "allocs")
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{Signers: map[string]Signer{"o": realSigner{s}}}
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) { return cfg, deps, nil }, WithMetrics(m))
	c, err := net.Dial("tcp", rs.s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	const n = 2000
	perRequest := func(route string) float64 {
		req := []byte("GET /" + route + "/v1/items?x=1&y=a+b HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
		do := func(k int) {
			for range k {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				if st, err := readRawResponse(br); err != nil || st != 200 {
					t.Fatalf("route %s: status %d: %v", route, st, err)
				}
			}
		}
		do(200) // warm the pools
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		do(n)
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / n
	}
	none, signed := perRequest("n"), perRequest("o")
	if fast := testutil.ToFloat64(m.fastPath.WithLabelValues("o")); fast < n {
		t.Fatalf("only %v oauth1 requests on the fast path", fast)
	}
	t.Logf("mallocs per request (process-wide, client included): none %.2f, oauth1 %.2f", none, signed)
	if none > 0.5 {
		// The fast path allocates nothing per request (send's wait once
		// made a closure and two variables per request: 3).
		t.Fatalf("a none request allocates %.2f objects", none)
	}
	if signed > none+1 {
		t.Fatalf("an oauth1 request allocates %.2f objects, one to a none route %.2f", signed, none)
	}
}

// signURLTargets are origin-form targets the fast path may sign: the ones
// signURL takes itself and the ones it leaves to url.ParseRequestURI.
var signURLTargets = []string{
	"/", "/v1/items?x=1", "/r/v1/items?x=1&y=%20z", "/a?", "/a?b?", "/a??", "/a?#x",
	"//double/slash", "/[v6]/@!$&'()*+,;=:/~-._", "/a#frag?x=1", "/a\"b<c>", "/é?é",
	"/a%2Fb", "/a%zz", "/a b", "/a\x7f", "/a?b=\x01", "", "a/b", "*",
}

// TestSignURLAsParseRequestURI: where signURL fills the URL itself, the
// URL is what url.ParseRequestURI returns for every part the signer
// reads (path as escaped, query, the whole URL); otherwise it declines.
func TestSignURLAsParseRequestURI(t *testing.T) {
	took := 0
	for _, target := range signURLTargets {
		if checkSignURL(t, target) {
			took++
		}
	}
	if took < 10 {
		t.Fatalf("signURL took only %d of the common targets", took)
	}
	for _, target := range []string{"/a%2Fb", "/a%zz", "", "a/b", "*", "/a\x7f"} {
		var u url.URL
		if signURL(&u, []byte(target)) {
			t.Errorf("signURL took %q", target)
		}
	}
}

// checkSignURL compares signURL with url.ParseRequestURI for one target
// and reports whether signURL took it.
func checkSignURL(t *testing.T, target string) bool {
	t.Helper()
	var u url.URL
	if !signURL(&u, []byte(target)) {
		return false
	}
	want, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("signURL took %q, ParseRequestURI refuses it: %v", target, err)
	}
	for _, v := range []*url.URL{&u, want} {
		v.Scheme, v.Host = "https", "Upstream.example:8443"
	}
	if u.EscapedPath() != want.EscapedPath() || u.Path != want.Path || u.RawQuery != want.RawQuery ||
		u.ForceQuery != want.ForceQuery || u.String() != want.String() || u.RequestURI() != want.RequestURI() {
		t.Fatalf("%q: signURL %#v, ParseRequestURI %#v", target, u, *want)
	}
	return true
}

func FuzzSignURL(f *testing.F) {
	for _, target := range signURLTargets {
		f.Add(target)
	}
	f.Fuzz(func(t *testing.T, target string) { checkSignURL(t, target) })
}
