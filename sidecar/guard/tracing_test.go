package guard

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/credbroker/credbroker/internal/tracing"
	"github.com/credbroker/credbroker/mockauth"
)

const (
	gTraceID = "7bf92f3577b34da6a3ce929d0e0e4736"
	gParent  = "20f067aa0ba902b7"
)

// TestGuardSpans: with a tracer provider every inbound request is a span
// (rule, method, decision, reason, status) in the caller's trace, the app
// gets it as parent, a key set fetch is its child, and no token, query or
// subject is in any span. Without one, the caller's traceparent reaches
// the app unchanged.
func TestGuardSpans(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	clock := newFakeClock(time.Now())
	srv := startMock(t, mockauth.Options{Now: clock.Now})
	rules := func() *Config {
		return &Config{Rules: []Rule{{Path: "/api/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName, Scopes: []string{"read"}}}}
	}
	traced := startGuard(t, rules(), nil, WithBindings(mockBindings(srv)), WithJWKSClient(srv.Client()), WithClock(clock.Now), WithTracerProvider(tp))
	plain := startGuard(t, rules(), nil, WithBindings(mockBindings(srv)), WithJWKSClient(srv.Client()), WithClock(clock.Now))

	tok := fetchToken(t, srv, false)
	const querySecret = "PLANTED-QUERY-5e6f"
	call := func(e *env, path, token string) *http.Response {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Traceparent", "00-"+gTraceID+"-"+gParent+"-01")
		req.Header.Set("Tracestate", "g=1")
		resp, _ := do(t, nil, req)
		return resp
	}

	g.Expect(call(plain, "/api/x", tok).StatusCode).To(Equal(200))
	g.Expect(plain.app.last().Header.Get("Traceparent")).To(Equal("00-" + gTraceID + "-" + gParent + "-01"))
	g.Expect(plain.app.last().Header.Get("Tracestate")).To(Equal("g=1"))
	g.Expect(rec.Ended()).To(BeEmpty(), "the untraced guard records nothing")

	g.Expect(call(traced, "/api/orders?sig="+querySecret, tok).StatusCode).To(Equal(200))
	var req, jwks sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case tracing.SpanGuard:
			req = s
		case tracing.SpanJWKSFetch:
			jwks = s
		}
	}
	g.Expect(req).NotTo(BeNil())
	g.Expect(req.SpanContext().TraceID().String()).To(Equal(gTraceID))
	g.Expect(req.Parent().SpanID().String()).To(Equal(gParent))
	a := map[attribute.Key]string{}
	for _, kv := range req.Attributes() {
		a[kv.Key] = kv.Value.Emit()
	}
	g.Expect(a).To(Equal(map[attribute.Key]string{
		tracing.AttrRule: "/api/", tracing.AttrAuth: "jwt", tracing.AttrAccepted: "true",
		tracing.AttrMethod: "GET", tracing.AttrStatus: "200",
	}))
	g.Expect(jwks).NotTo(BeNil(), "the first token made the guard fetch the key set")
	g.Expect(jwks.Parent().SpanID()).To(Equal(req.SpanContext().SpanID()))
	g.Expect(traced.app.last().Header.Get("Traceparent")).To(Equal(fmt.Sprintf("00-%s-%s-01", gTraceID, req.SpanContext().SpanID())))
	g.Expect(traced.app.last().Header.Get("Tracestate")).To(Equal("g=1"))

	rec.Reset()
	g.Expect(call(traced, "/api/x?sig="+querySecret, "").StatusCode).To(Equal(401))
	g.Expect(call(traced, "/other/x", tok).StatusCode).To(Equal(403))
	var reasons []string
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == tracing.AttrReason {
				reasons = append(reasons, kv.Value.AsString())
			}
			if kv.Key == tracing.AttrAccepted {
				g.Expect(kv.Value.AsBool()).To(BeFalse())
			}
		}
	}
	g.Expect(reasons).To(ConsistOf(ReasonNoCredentials, ReasonNoRule))

	var dump strings.Builder
	for _, s := range append(rec.Ended(), req, jwks) {
		fmt.Fprintf(&dump, "%s %v %v %v %v\n", s.Name(), s.Attributes(), s.Status(), s.Events(), s.Links())
	}
	info := srv.Info()
	for _, secret := range []string{tok, strings.Split(tok, ".")[2], querySecret, info.SecretClientID, info.URL} {
		g.Expect(dump.String()).NotTo(ContainSubstring(secret))
	}
}

// TestJWKSBackgroundRefreshIsARootSpan: the key set fetch a request waits
// for is its child; the refresh of a cached set that a later request only
// starts (and does not wait for) is a root span.
func TestJWKSBackgroundRefreshIsARootSpan(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	clock := newFakeClock(time.Now())
	srv := startMock(t, mockauth.Options{Now: clock.Now})
	cfg := &Config{Rules: []Rule{{Path: "/api/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName}}}
	e := startGuard(t, cfg, nil, WithBindings(mockBindings(srv)), WithJWKSClient(srv.Client()), WithClock(clock.Now),
		WithKeyRefresh(time.Minute, 0), WithTracerProvider(tp))
	tok := fetchToken(t, srv, false)
	call := func() {
		req, _ := http.NewRequest("GET", e.url+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, _ := do(t, nil, req)
		g.Expect(resp.StatusCode).To(Equal(200))
	}
	spans := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	call()
	g.Expect(spans(tracing.SpanJWKSFetch)).To(HaveLen(1))
	first := spans(tracing.SpanJWKSFetch)[0]
	g.Expect(first.Parent().SpanID()).To(Equal(spans(tracing.SpanGuard)[0].SpanContext().SpanID()))

	clock.Advance(2 * time.Minute) // the cached set is due for a refresh
	call()
	g.Eventually(func() []sdktrace.ReadOnlySpan { return spans(tracing.SpanJWKSFetch) }).Should(HaveLen(2))
	refresh := spans(tracing.SpanJWKSFetch)[1]
	g.Expect(refresh.Parent().IsValid()).To(BeFalse(), "a background refresh is a root span")
	for _, s := range spans(tracing.SpanGuard) {
		g.Expect(refresh.SpanContext().TraceID()).NotTo(Equal(s.SpanContext().TraceID()))
	}
}
