package tokenclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

// TestFetchSpans: a fetch is a child span of the caller that started it,
// a caller that joined the same fetch links to it, the token request
// carries the fetch's traceparent, and no secret or token is in a span.
func TestFetchSpans(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(bg) })
	tr := tp.Tracer("test")

	release := make(chan struct{})
	var mu sync.Mutex
	var parents []string
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("Traceparent"))
		mu.Unlock()
		if n.Add(1) == 1 {
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/bad/oauth/token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"planted-description"}`)
			return
		}
		fmt.Fprint(w, `{"access_token":"planted-access-token-9c1d","token_type":"bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	var misses atomic.Int64
	c := newClient(t, Config{ClientID: "sb-client!t1", ClientSecret: "planted-client-secret-7f3a", TokenURL: srv.URL},
		WithTracerProvider(tp), WithObserver(Observer{Miss: func() { misses.Add(1) }}))

	ctx1, span1 := tr.Start(bg, "caller1")
	ctx2, span2 := tr.Start(bg, "caller2")
	errs := make(chan error, 2)
	go func() { _, err := c.Token(ctx1, Request{}); errs <- err }()
	g.Eventually(n.Load).Should(BeEquivalentTo(1), "the first caller's fetch reached the server")
	go func() { _, err := c.Token(ctx2, Request{}); errs <- err }()
	g.Eventually(misses.Load).Should(BeEquivalentTo(2), "the second caller joined the fetch")
	close(release)
	g.Expect(<-errs).To(Succeed())
	g.Expect(<-errs).To(Succeed())
	span1.End()
	span2.End()

	var fetch sdktrace.ReadOnlySpan
	var joined sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case tracing.SpanTokenFetch:
			g.Expect(fetch).To(BeNil(), "one fetch")
			fetch = s
		case "caller2":
			joined = s
		}
	}
	g.Expect(fetch).NotTo(BeNil())
	g.Expect(fetch.SpanKind()).To(Equal(trace.SpanKindClient))
	g.Expect(fetch.Parent().SpanID()).To(Equal(span1.SpanContext().SpanID()), "a child of the caller that started it")
	g.Expect(fetch.SpanContext().TraceID()).To(Equal(span1.SpanContext().TraceID()))
	a := map[string]string{}
	for _, kv := range fetch.Attributes() {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	g.Expect(a).To(Equal(map[string]string{
		string(tracing.AttrGrant): "client_credentials", string(tracing.AttrFetchReason): "miss",
		string(tracing.AttrAttempts): "1", string(tracing.AttrStatus): "200",
	}))
	g.Expect(joined.Links()).To(HaveLen(1))
	g.Expect(joined.Links()[0].SpanContext.SpanID()).To(Equal(fetch.SpanContext().SpanID()))
	g.Expect(joined.Links()[0].Attributes[0].Value.AsString()).To(Equal(tracing.LinkJoinedFetch))
	mu.Lock()
	g.Expect(parents).To(Equal([]string{"00-" + fetch.SpanContext().TraceID().String() + "-" + fetch.SpanContext().SpanID().String() + "-01"}))
	mu.Unlock()

	// A refused fetch: the error's class, not its text.
	rec.Reset()
	bad := newClient(t, Config{ClientID: "sb-client!t1", ClientSecret: "planted-client-secret-7f3a", TokenURL: srv.URL + "/bad"}, WithTracerProvider(tp))
	_, err := bad.Token(bg, Request{Scopes: []string{"planted.scope"}})
	g.Expect(err).To(HaveOccurred())
	var failed sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == tracing.SpanTokenFetch {
			failed = s
		}
	}
	g.Expect(failed).NotTo(BeNil())
	g.Expect(failed.Parent().IsValid()).To(BeFalse())
	g.Expect(failed.Status().Code).To(Equal(codes.Error))
	g.Expect(failed.Status().Description).To(Equal("token-error"))

	var dump strings.Builder
	for _, s := range append(rec.Ended(), fetch, joined) {
		fmt.Fprintf(&dump, "%s %v %v %v %v\n", s.Name(), s.Attributes(), s.Status(), s.Events(), s.Links())
	}
	for _, secret := range []string{"planted-client-secret-7f3a", "planted-access-token-9c1d", "planted-description", "planted.scope", "sb-client"} {
		g.Expect(dump.String()).NotTo(ContainSubstring(secret))
	}
}

// TestNoSpansWithoutProvider: without WithTracerProvider a fetch sends no
// traceparent of its own (a caller's context is not propagated either).
func TestNoSpansWithoutProvider(t *testing.T) {
	g := NewWithT(t)
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Traceparent"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"a","token_type":"bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, Config{ClientID: "id", ClientSecret: "s", TokenURL: srv.URL})
	_, err := c.Token(context.Background(), Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Load()).To(Equal(""))
}

// TestBackgroundRefreshIsARootSpan: a refresh ahead runs for no caller, so
// its fetch span is a root span (fetch_reason refresh), even when the
// request that last used the token was traced.
func TestBackgroundRefreshIsARootSpan(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(bg) })
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithRefreshAhead(0.5, 0), WithTracerProvider(tp))

	ctx, caller := tp.Tracer("test").Start(bg, "caller")
	_, err := c.Token(ctx, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	// A traced request uses the cached token (only tokens in use are
	// refreshed ahead).
	ctx2, user := tp.Tracer("test").Start(bg, "user")
	_, err = c.Token(ctx2, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	caller.End()
	user.End()
	clk.Advance(31 * time.Minute) // past the refresh point of a one-hour token
	fetches := func() map[string]sdktrace.ReadOnlySpan {
		out := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if s.Name() != tracing.SpanTokenFetch {
				continue
			}
			for _, kv := range s.Attributes() {
				if kv.Key == tracing.AttrFetchReason {
					out[kv.Value.AsString()] = s
				}
			}
		}
		return out
	}
	g.Eventually(fetches).Should(HaveKey(string(ReasonRefresh)))
	miss, refresh := fetches()[string(ReasonMiss)], fetches()[string(ReasonRefresh)]
	g.Expect(miss.Parent().SpanID()).To(Equal(caller.SpanContext().SpanID()), "the miss is the caller's child")
	g.Expect(refresh.Parent().IsValid()).To(BeFalse(), "the refresh is a root span")
	g.Expect(refresh.SpanContext().TraceID()).NotTo(BeElementOf(caller.SpanContext().TraceID(), user.SpanContext().TraceID()))
}
