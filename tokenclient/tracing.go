package tokenclient

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

// WithTracerProvider makes every token fetch a span (credbroker.token.fetch):
// a child of the caller that started it, linked from the callers that
// joined it, with the grant, the reason, the attempts and the last HTTP
// status; the token request carries its traceparent. nil (the default)
// makes none. No token, secret, assertion, tenant or scope goes into a span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		o.tracer = nil
		if tp != nil {
			o.tracer = tp.Tracer(tracing.ScopeName)
		}
	}
}

// startSpan starts the span of e's fetch, a child of the span in parent
// (the caller that started it; a root span for background refreshes). The
// fetch itself is not bound to that caller's cancellation.
func (c *Client) startSpan(parent context.Context, e *entry, reason FetchReason) trace.Span {
	ctx := trace.ContextWithSpan(context.Background(), trace.SpanFromContext(parent))
	_, span := c.o.tracer.Start(ctx, tracing.SpanTokenFetch, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.AttrGrant.String(grantName(e.id.grant)), tracing.AttrFetchReason.String(string(reason))))
	return span
}

// linkJoined links the span of a caller that waits for a fetch another
// caller started (the same single-flight) to that fetch's span.
func linkJoined(ctx context.Context, fetch trace.Span) {
	trace.SpanFromContext(ctx).AddLink(trace.Link{
		SpanContext: fetch.SpanContext(),
		Attributes:  []attribute.KeyValue{tracing.AttrLinkKind.String(tracing.LinkJoinedFetch)},
	})
}

// endSpan reports a fetch's outcome: a class of the error, never its text
// (which names the token URL).
func endSpan(span trace.Span, attempts, status int, err error) {
	span.SetAttributes(tracing.AttrAttempts.Int(attempts))
	if status != 0 {
		span.SetAttributes(tracing.AttrStatus.Int(status))
	}
	if err != nil {
		class := errorClass(err)
		span.SetAttributes(tracing.AttrErrorType.String(class))
		span.SetStatus(codes.Error, class)
	}
	span.End()
}

func errorClass(err error) string {
	var te *TokenError
	switch {
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.As(err, &te):
		return "token-error"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrBadResponse):
		return "bad-response"
	case errors.Is(err, ErrRedirect):
		return "redirect"
	case errors.Is(err, ErrCertificate):
		return "certificate"
	}
	return "other"
}

// grantName bounds the grant for an attribute.
func grantName(g Grant) string {
	switch g {
	case GrantClientCredentials, GrantPassword, GrantJWTBearer, GrantRefreshToken:
		return string(g)
	case "":
		return string(GrantClientCredentials)
	}
	return "other"
}

// injectTrace sends the fetch's trace context to the token service.
func injectTrace(ctx context.Context, req *http.Request) {
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
}
