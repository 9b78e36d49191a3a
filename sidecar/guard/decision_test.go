package guard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/credbroker/credbroker/mockauth"
)

// TestRecordDecision: the decision a request's caller asked for is the
// guard's own — the rule's configured path, the method, the refusal reason,
// when the app was called — and never the X-Credbroker-Error the app set in
// its response; an app the guard cannot reach is app_unreachable; with
// tracing the trace id is the span's.
func TestRecordDecision(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, mockauth.Options{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderError, "planted-by-the-app")
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(app.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	newGuard := func(appURL string, opts ...Option) *Guard {
		cfg := &Config{Listen: "127.0.0.1:0", App: appURL, Rules: []Rule{{Path: "/api/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName}}}
		gd, err := New(cfg, append([]Option{WithBindings(mockBindings(srv)), WithJWKSClient(srv.Client())}, opts...)...)
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() { _ = gd.Close() })
		return gd
	}
	tok := fetchToken(t, srv, false)
	serve := func(gd *Guard, path, token string, hdr ...string) (*httptest.ResponseRecorder, Decision) {
		req := httptest.NewRequest("GET", "http://guard.local"+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		var d Decision
		w := httptest.NewRecorder()
		gd.ServeHTTP(w, req.WithContext(RecordDecision(req.Context(), &d)))
		return w, d
	}

	plain := newGuard(app.URL)
	w, d := serve(plain, "/nope", tok)
	g.Expect(w.Code).To(Equal(http.StatusForbidden))
	g.Expect(d).To(Equal(Decision{Method: MethodNone, Reason: ReasonNoRule}))

	w, d = serve(plain, "/api/x", "")
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(d).To(Equal(Decision{Rule: "/api/", Method: MethodNone, Reason: ReasonNoCredentials}))

	w, d = serve(plain, "/api/x?q=1", "not.a.token")
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(d.Rule).To(Equal("/api/"))
	g.Expect(d.Method).To(Equal(MethodJWT))
	g.Expect(d.Reason).To(Equal(w.Header().Get(HeaderError)))
	g.Expect(d.AppStart.IsZero()).To(BeTrue(), "a refused request never reaches the app")

	w, d = serve(plain, "/api/x", tok)
	g.Expect(w.Code).To(Equal(http.StatusTeapot))
	g.Expect(w.Header().Get(HeaderError)).To(Equal("planted-by-the-app"))
	g.Expect(d.Reason).To(BeEmpty(), "the app's header is not the guard's reason")
	g.Expect(d.Rule).To(Equal("/api/"))
	g.Expect(d.Method).To(Equal(MethodJWT))
	g.Expect(d.AppStart.IsZero()).To(BeFalse())
	g.Expect(d.TraceID.IsValid()).To(BeFalse(), "no tracing, no span")

	w, d = serve(newGuard(gone.URL), "/api/x", tok)
	g.Expect(w.Code).To(Equal(http.StatusBadGateway))
	g.Expect(d.Reason).To(Equal(ReasonAppUnreachable))
	g.Expect(d.Method).To(Equal(MethodJWT))
	g.Expect(d.AppStart.IsZero()).To(BeFalse())

	const traceID = "8bf92f3577b34da6a3ce929d0e0e4736"
	w, d = serve(newGuard(app.URL, WithTracerProvider(tp)), "/nope", "", "Traceparent", "00-"+traceID+"-30f067aa0ba902b7-01")
	g.Expect(w.Code).To(Equal(http.StatusForbidden))
	g.Expect(d.TraceID.String()).To(Equal(traceID))
	g.Expect(d.Reason).To(Equal(ReasonNoRule))

	// Without RecordDecision the guard serves as ever.
	req := httptest.NewRequest("GET", "http://guard.local/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w = httptest.NewRecorder()
	plain.ServeHTTP(w, req)
	g.Expect(w.Code).To(Equal(http.StatusTeapot))
}
