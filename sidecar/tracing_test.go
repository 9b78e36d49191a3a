package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

const (
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParentSpan  = "00f067aa0ba902b7"
	testTraceparent = "00-" + testTraceID + "-" + testParentSpan + "-01"
	testTracestate  = "vendor1=opaque1,vendor2=opaque2"
)

// TestTraceContextForwardedWithTracingOff: without a tracer provider the
// app's traceparent and tracestate reach the upstream byte for byte, on
// the fast path and on net/http's path.
func TestTraceContextForwardedWithTracingOff(t *testing.T) {
	g := NewWithT(t)
	up := plainUpstream(t)
	routes := fmt.Sprintf("routes: [{name: open, upstream: '%s', auth: {type: none}},"+
		" {name: tenant, upstream: '%s', auth: {type: bearer, binding: b, tenant_header: X-T}}]\n", up.URL, up.URL)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "trace off")
		return c, Deps{Tokens: staticTokens{}}, err
	}, WithMetrics(m))
	for _, tc := range []struct {
		route string
		fast  bool
	}{{"open", true}, {"tenant", false}} {
		before := fastServed(m)
		res := rawRoundTrip(t, rs.s.Addr(), "GET /"+tc.route+"/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-T: t1\r\n"+
			"traceparent: "+testTraceparent+"\r\ntracestate: "+testTracestate+"\r\n\r\n")
		g.Expect(res.Status).To(Equal(200))
		g.Expect(res.Upstream).NotTo(BeNil())
		g.Expect(res.Upstream.Header.Values("Traceparent")).To(Equal([]string{testTraceparent}), tc.route)
		g.Expect(res.Upstream.Header.Values("Tracestate")).To(Equal([]string{testTracestate}), tc.route)
		if tc.fast {
			g.Eventually(func() float64 { return fastServed(m) }).Should(Equal(before+1), "served on the fast path")
		} else {
			g.Expect(fastServed(m)).To(Equal(before), "served on net/http's path")
		}
	}
}

// ctxTokens records the span context each token request was made in.
type ctxTokens struct {
	token string
	err   error
	mu    sync.Mutex
	seen  []trace.SpanContext
}

func (c *ctxTokens) Source(string, []string, string) (TokenSource, error) { return c, nil }
func (c *ctxTokens) Token(ctx context.Context, _ TokenRequest) (Token, error) {
	c.mu.Lock()
	c.seen = append(c.seen, trace.SpanContextFromContext(ctx))
	c.mu.Unlock()
	if c.err != nil {
		return Token{}, c.err
	}
	return Token{AccessToken: c.token, TokenType: "bearer"}, nil
}

func newRecorder(t *testing.T, sampler string) (*tracetest.SpanRecorder, trace.TracerProvider) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	p, err := tracing.NewWithProcessor(tracing.Settings{Sampler: sampler, SamplerArg: "0"}, "test", rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return rec, p
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// TestProxySpans: with a tracer provider every proxied request is a span
// in the app's trace (route, method, upstream host, status, auth kind,
// refusal reason), the upstream gets the span's context, and the token
// source is asked in that span's context.
func TestProxySpans(t *testing.T) {
	g := NewWithT(t)
	rec, tp := newRecorder(t, "")
	up := plainUpstream(t)
	toks := &ctxTokens{token: "tok-1"}
	failing := &ctxTokens{err: fmt.Errorf("auth server down")}
	routes := fmt.Sprintf("routes: [{name: open, upstream: '%s', auth: {type: none}},"+
		" {name: tok, upstream: '%s', auth: {type: bearer, binding: b}},"+
		" {name: down, upstream: '%s', auth: {type: bearer, binding: down}}]\n", up.URL, up.URL, up.URL)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "trace on")
		return c, Deps{Tokens: splitTokens{"b": toks, "down": failing}}, err
	}, WithMetrics(m), WithTracerProvider(tp))

	// A route the fast path would take: with tracing it is net/http's.
	before := fastServed(m)
	res := rawRoundTrip(t, rs.s.Addr(), "GET /tok/x?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\ntraceparent: "+testTraceparent+"\r\ntracestate: "+testTracestate+"\r\n\r\n")
	g.Expect(res.Status).To(Equal(200))
	g.Expect(fastServed(m)).To(Equal(before))
	spans := spansNamed(rec, tracing.SpanProxy)
	g.Expect(spans).To(HaveLen(1))
	sp := spans[0]
	g.Expect(sp.SpanKind()).To(Equal(trace.SpanKindServer))
	g.Expect(sp.SpanContext().TraceID().String()).To(Equal(testTraceID))
	g.Expect(sp.Parent().SpanID().String()).To(Equal(testParentSpan))
	g.Expect(sp.Parent().IsRemote()).To(BeTrue())
	a := attrs(sp)
	g.Expect(a[tracing.AttrRoute].AsString()).To(Equal("tok"))
	g.Expect(a[tracing.AttrMethod].AsString()).To(Equal("GET"))
	g.Expect(a[tracing.AttrAuth].AsString()).To(Equal("bearer"))
	g.Expect(a[tracing.AttrServerAddr].AsString()).To(Equal("127.0.0.1"))
	g.Expect(a[tracing.AttrStatus].AsInt64()).To(Equal(int64(200)))
	g.Expect(a).NotTo(HaveKey(tracing.AttrReason))
	// The upstream is a child of the proxy's span; tracestate travels on.
	want := "00-" + testTraceID + "-" + sp.SpanContext().SpanID().String() + "-01"
	g.Expect(res.Upstream.Header.Values("Traceparent")).To(Equal([]string{want}))
	g.Expect(res.Upstream.Header.Values("Tracestate")).To(Equal([]string{testTracestate}))
	// The token source ran in the request's span (its fetch is a child);
	// the readiness check asks outside any request, before or (on a busy
	// machine) after it, so the last call need not be the request's: every
	// call with a span is the request's, and there is one.
	toks.mu.Lock()
	var inSpan []trace.SpanID
	for _, sc := range toks.seen {
		if sc.IsValid() {
			inSpan = append(inSpan, sc.SpanID())
		}
	}
	toks.mu.Unlock()
	g.Expect(inSpan).NotTo(BeEmpty())
	g.Expect(inSpan).To(HaveEach(sp.SpanContext().SpanID()))

	// Refusals: the reason is on the span; 5xx marks it failed.
	for _, tc := range []struct {
		req, route, reason string
		status             int
	}{
		{"GET /down/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "down", ReasonTokenUnavailable, 503},
		{"GET /nothing/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "", ReasonNotARoute, 403},
		{"GET /open/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", "open", ReasonHostNotAllowed, 403},
	} {
		rec.Reset()
		res := rawRoundTrip(t, rs.s.Addr(), tc.req)
		g.Expect(res.Status).To(Equal(tc.status))
		spans := spansNamed(rec, tracing.SpanProxy)
		g.Expect(spans).To(HaveLen(1), tc.req)
		a := attrs(spans[0])
		g.Expect(a[tracing.AttrReason].AsString()).To(Equal(tc.reason))
		g.Expect(a[tracing.AttrStatus].AsInt64()).To(Equal(int64(tc.status)))
		if tc.route != "" {
			g.Expect(a[tracing.AttrRoute].AsString()).To(Equal(tc.route))
		} else {
			g.Expect(a).NotTo(HaveKey(tracing.AttrRoute))
		}
		g.Expect(spans[0].Status().Code == codes.Error).To(Equal(tc.status >= 500), "error status for 5xx only")
		g.Expect(spans[0].Parent().IsValid()).To(BeFalse(), "no traceparent: a root span")
	}
}

// TestProxyUnsampled: a request the sampler drops records nothing, stays
// on the fast path, and still sends upstream the traceparent the SDK sends
// for an unrecorded span (the app's trace, a new span id, not sampled;
// tracestate untouched) — the same as net/http's path sends.
func TestProxyUnsampled(t *testing.T) {
	g := NewWithT(t)
	rec, tp := newRecorder(t, tracing.SamplerParentTraceIDRatio) // ratio 0: no root sampled
	up := plainUpstream(t)
	routes := fmt.Sprintf("routes: [{name: open, upstream: '%s', auth: {type: none}}, {name: tenant, upstream: '%s', auth: {type: bearer, binding: b, tenant_header: X-T}}]\n", up.URL, up.URL)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "unsampled")
		return c, Deps{Tokens: staticTokens{}}, err
	}, WithTracerProvider(tp), WithMetrics(m))
	for _, tc := range []struct {
		route, traceparent, tracestate, wantTrace, wantFlags string
	}{
		{"open", "00-" + testTraceID + "-" + testParentSpan + "-00", testTracestate, testTraceID, "00"},
		{"open", "00-" + testTraceID + "-" + testParentSpan + "-02", "", testTraceID, "02"}, // random flag kept
		{"open", "", "", "", "00"},
		{"tenant", "00-" + testTraceID + "-" + testParentSpan + "-00", testTracestate, testTraceID, "00"},
		{"tenant", "", "", "", "00"},
	} {
		hdr := ""
		if tc.traceparent != "" {
			hdr += "traceparent: " + tc.traceparent + "\r\n"
		}
		if tc.tracestate != "" {
			hdr += "tracestate: " + tc.tracestate + "\r\n"
		}
		before := fastServed(m)
		res := rawRoundTrip(t, rs.s.Addr(), "GET /"+tc.route+"/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"+hdr+"\r\n")
		g.Expect(res.Status).To(Equal(200))
		got := res.Upstream.Header.Values("Traceparent")
		g.Expect(got).To(HaveLen(1), "%+v", tc)
		parts := strings.Split(got[0], "-")
		g.Expect(parts).To(HaveLen(4))
		g.Expect(parts[0]).To(Equal("00"))
		if tc.wantTrace != "" {
			g.Expect(parts[1]).To(Equal(tc.wantTrace))
		} else {
			g.Expect(parts[1]).To(MatchRegexp("^[0-9a-f]{32}$"))
			g.Expect(parts[1]).NotTo(Equal(strings.Repeat("0", 32)))
		}
		g.Expect(parts[2]).To(MatchRegexp("^[0-9a-f]{16}$"))
		g.Expect(parts[2]).NotTo(Equal(testParentSpan), "a span id of its own")
		g.Expect(parts[3]).To(Equal(tc.wantFlags))
		if tc.tracestate != "" {
			g.Expect(res.Upstream.Header.Values("Tracestate")).To(Equal([]string{tc.tracestate}))
		}
		if tc.route == "open" {
			g.Eventually(func() float64 { return fastServed(m) }).Should(Equal(before+1), "an unsampled request stays on the fast path")
		} else {
			g.Expect(fastServed(m)).To(Equal(before))
		}
	}
	g.Expect(rec.Ended()).To(BeEmpty())
}

// recordingSampler records every trace id it is asked about and samples
// every one.
type recordingSampler struct {
	mu  sync.Mutex
	ids []trace.TraceID
}

func (s *recordingSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	s.ids = append(s.ids, p.TraceID)
	s.mu.Unlock()
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}
func (s *recordingSampler) Description() string { return "recording" }

// TestProxySampledRootKeepsItsTraceID: a root request the fast path finds
// sampled is recorded on net/http's path with the trace id it was sampled
// on (the sampler decides once per request, so a ratio is the ratio).
func TestProxySampledRootKeepsItsTraceID(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	s := &recordingSampler{}
	tp, err := tracing.NewWithProcessor(tracing.Settings{}, "test", rec, s)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	up := plainUpstream(t)
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: open, upstream: '%s', auth: {type: none}}]\n", up.URL)), "pinned")
		return c, Deps{}, err
	}, WithTracerProvider(tp))
	res := rawRoundTrip(t, rs.s.Addr(), "GET /open/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(res.Status).To(Equal(200))
	spans := spansNamed(rec, tracing.SpanProxy)
	g.Expect(spans).To(HaveLen(1))
	s.mu.Lock()
	defer s.mu.Unlock()
	g.Expect(s.ids).To(HaveLen(2), "asked on the fast path, then by the span on net/http's path")
	g.Expect(s.ids[1]).To(Equal(s.ids[0]), "the same trace id both times")
	g.Expect(spans[0].SpanContext().TraceID()).To(Equal(s.ids[0]))
}

// TestParseTraceparent agrees with the W3C propagator of the SDK on what
// a valid version-00 traceparent is.
func TestParseTraceparent(t *testing.T) {
	g := NewWithT(t)
	for _, v := range []string{
		testTraceparent,
		"00-" + testTraceID + "-" + testParentSpan + "-00",
		"00-" + testTraceID + "-" + testParentSpan + "-03",
		"00-" + testTraceID + "-" + testParentSpan + "-04",
		"00-" + strings.ToUpper(testTraceID) + "-" + testParentSpan + "-01",
		"00-" + strings.Repeat("0", 32) + "-" + testParentSpan + "-01",
		"00-" + testTraceID + "-" + strings.Repeat("0", 16) + "-01",
		"00-" + testTraceID + "-" + testParentSpan + "-01-extra",
		"01-" + testTraceID + "-" + testParentSpan + "-01",
		"00-" + testTraceID + "x" + testParentSpan + "-01",
		"00-" + testTraceID[:31] + "g-" + testParentSpan + "-01",
		"",
	} {
		ours, ver, ok := parseTraceparent([]byte(v))
		ok = ok && ver == 0 // the fast path samples version 00 only
		sdk := trace.SpanContextFromContext(tracing.Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": v}))
		if ok {
			g.Expect(ours.Equal(sdk)).To(BeTrue(), v)
			g.Expect(string(appendTraceparent(nil, ours))).To(Equal(v))
		} else if strings.HasPrefix(v, "00-") && len(v) == 55 {
			g.Expect(sdk.IsValid()).To(BeFalse(), "refused here, valid for the SDK: %q", v)
		}
	}
}

// splitTokens hands each binding its own source.
type splitTokens map[string]TokenSource

func (s splitTokens) Source(binding string, _ []string, _ string) (TokenSource, error) {
	return s[binding], nil
}

// TestSpansCarryNoSecrets plants a token, a user JWT, an app credential,
// query strings, header values and path segments and checks that no span
// (name, attribute, event, link, status, resource) holds any of them.
func TestSpansCarryNoSecrets(t *testing.T) {
	g := NewWithT(t)
	rec, tp := newRecorder(t, "")
	up := plainUpstream(t)
	const (
		token    = "PLANTED-ACCESS-TOKEN-a1b2c3"
		userJWT  = "eyPLANTED.USERJWT.d4e5f6"
		appCred  = "PLANTED-APP-CRED-g7h8"
		query    = "PLANTED-QUERY-i9j0"
		hdrValue = "PLANTED-HEADER-k1l2"
		pathSeg  = "PLANTED-PATH-m3n4"
		tenant   = "PLANTED-TENANT-o5p6"
	)
	toks := &ctxTokens{token: token}
	routes := fmt.Sprintf("routes: [{name: tok, upstream: '%s', auth: {type: bearer, binding: b}},"+
		" {name: user, upstream: '%s', auth: {type: bearer, binding: b, grant: jwt-bearer}},"+
		" {name: ten, upstream: '%s', auth: {type: bearer, binding: b, tenant_header: X-Tenant}}]\n", up.URL, up.URL, up.URL)
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "secrets")
		return c, Deps{Tokens: toks}, err
	}, WithTracerProvider(tp))
	for _, req := range []string{
		"GET /tok/" + pathSeg + "?secret=" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + appCred + "\r\nX-Custom: " + hdrValue + "\r\n\r\n",
		"GET /user/" + pathSeg + "?q=" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + userJWT + "\r\n\r\n",
		"GET /ten/x?q=" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant: " + tenant + "\r\n\r\n",
		"GET /nothing/" + pathSeg + "?q=" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + userJWT + "\r\n\r\n",
		"POST /tok/x?q=" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\n" + "body",
	} {
		res := rawRoundTrip(t, rs.s.Addr(), req)
		g.Expect(res.Status).To(BeNumerically(">=", 200))
	}
	spans := rec.Ended()
	g.Expect(len(spans)).To(BeNumerically(">=", 5))
	dump := dumpSpans(spans)
	for _, secret := range []string{token, userJWT, appCred, query, hdrValue, pathSeg, tenant} {
		g.Expect(dump).NotTo(ContainSubstring(secret))
	}
}

// dumpSpans renders everything a span exports as text.
func dumpSpans(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %v %v\n", s.Name(), s.Status(), s.Resource().Attributes())
		for _, kv := range s.Attributes() {
			fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.Emit())
		}
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "event %s %v\n", e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			fmt.Fprintf(&b, "link %v\n", l.Attributes)
		}
	}
	return b.String()
}

// BenchmarkTracingOffHooks is what the tracing hooks cost a request when
// tracing is off: the tracer checks of ServeHTTP and serveFast, the route
// note of net/http's path and the empty traceparent line the fast path
// appends. It must stay at a few nanoseconds and no allocation.
func BenchmarkTracingOffHooks(b *testing.B) {
	p := &Proxy{}
	r := &route{}
	w := &discardWriter{h: http.Header{}}
	fc := &fastConn{fastScratch: &fastScratch{out: make([]byte, 0, 64)}}
	b.ReportAllocs()
	for b.Loop() {
		if p.o.tracer != nil {
			b.Fatal("tracing is on")
		}
		noteRoute(w, r)
		fc.out = append(fc.out[:0], fc.traceLine...)
		if fc.handlerContext() != nil {
			b.Fatal("a context without a connection")
		}
	}
}

// TestTracingOffHooksDoNotAllocate holds the hooks of
// BenchmarkTracingOffHooks to no allocation (issue 22: with tracing off, no
// allocation on the hot path).
func TestTracingOffHooksDoNotAllocate(t *testing.T) {
	p := &Proxy{}
	r := &route{}
	w := &discardWriter{h: http.Header{}}
	fc := &fastConn{fastScratch: &fastScratch{out: make([]byte, 0, 64)}}
	n := testing.AllocsPerRun(1000, func() {
		if p.o.tracer != nil {
			t.Fatal("tracing is on")
		}
		noteRoute(w, r)
		fc.out = append(fc.out[:0], fc.traceLine...)
		if fc.handlerContext() != nil {
			t.Fatal("a context without a connection")
		}
	})
	if n != 0 {
		t.Fatalf("the tracing-off hooks allocate %v times per request", n)
	}
}

// With tracing and the access log both on, a request without a traceparent
// is logged under the trace id of the span made for it, and a refusal's
// reason reaches both the span and the line.
func TestAccessLogCarriesTheSpansTraceID(t *testing.T) {
	g := NewWithT(t)
	rec, tp := newRecorder(t, "")
	up := plainUpstream(t)
	out := &syncBuffer{}
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\naccess_log: {enabled: true}\n"+
			"routes: [{name: tok, upstream: '%s', auth: {type: bearer, binding: b}}]\n", up.URL)), "trace and log")
		return c, Deps{Tokens: splitTokens{"b": &ctxTokens{token: "tok-1"}}}, err
	}, WithTracerProvider(tp), WithAccessLogOutput(out))
	res := rawRoundTrip(t, rs.s.Addr(), "GET /tok/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(res.Status).To(Equal(200))
	res = rawRoundTrip(t, rs.s.Addr(), "GET /nope/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(res.Status).To(Equal(403))
	g.Eventually(func() int { return len(out.lines()) }, 10*time.Second, 10*time.Millisecond).Should(Equal(2))
	spans := spansNamed(rec, tracing.SpanProxy)
	g.Expect(spans).To(HaveLen(2))
	byTrace := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byTrace[s.SpanContext().TraceID().String()] = s
	}
	for _, l := range out.lines() {
		id, _ := l["trace_id"].(string)
		sp, ok := byTrace[id]
		g.Expect(ok).To(BeTrue(), "the line's trace id %q is a span's", id)
		if l["path"] == "/nope/x" {
			g.Expect(l).To(HaveKeyWithValue("reason", "not-a-route"))
			g.Expect(attrs(sp)[tracing.AttrReason].AsString()).To(Equal("not-a-route"))
		}
	}
}
