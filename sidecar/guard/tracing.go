package guard

import (
	"context"
	"crypto/rsa"
	"net/http"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

// WithTracerProvider makes every inbound request a span (credbroker.guard:
// the rule, the method, accepted or the refusal reason, the status) in
// the trace the caller's traceparent names, passes the span's context to
// the app, and makes every key set fetch a span
// (credbroker.guard.jwks_fetch). nil (the default) makes none; the
// caller's traceparent then reaches the app unchanged. No token, subject
// or path goes into a span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *settings) {
		s.tracer = nil
		if tp != nil {
			s.tracer = tp.Tracer(tracing.ScopeName)
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 && w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (g *Guard) serveTraced(w http.ResponseWriter, r *http.Request) {
	carrier := propagation.HeaderCarrier(r.Header)
	ctx := tracing.Propagator.Extract(r.Context(), carrier)
	ctx, span := g.tracer.Start(ctx, tracing.SpanGuard, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.AttrMethod.String(tracing.Method(r.Method))))
	defer span.End()
	if d := decisionOf(ctx); d != nil {
		d.TraceID = span.SpanContext().TraceID()
	}
	tracing.Propagator.Inject(ctx, carrier)
	sw := &statusWriter{ResponseWriter: w}
	g.serveHTTP(sw, r.WithContext(ctx))
	if sw.status != 0 {
		span.SetAttributes(tracing.AttrStatus.Int(sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
}

// noteDecision puts the guard's decision on the request's span.
func noteDecision(ctx context.Context, ru *rule, m Method, reason string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if ru != nil {
		span.SetAttributes(tracing.AttrRule.String(ru.path))
	}
	span.SetAttributes(tracing.AttrAuth.String(string(m)), tracing.AttrAccepted.Bool(reason == ""))
	if reason != "" {
		span.SetAttributes(tracing.AttrReason.String(reason))
	}
}

// fetchKeys fetches a key set, in a span when tracing.
func (c *keyCache) fetchKeys(ctx context.Context, url string) (map[string]*rsa.PublicKey, error) {
	if c.tracer == nil {
		return fetchJWKS(ctx, c.client, url)
	}
	ctx, span := c.tracer.Start(ctx, tracing.SpanJWKSFetch, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	keys, err := fetchJWKS(ctx, c.client, url)
	if err != nil {
		span.SetAttributes(tracing.AttrErrorType.String("jwks-fetch-failed"))
		span.SetStatus(codes.Error, "jwks-fetch-failed")
	}
	return keys, err
}
