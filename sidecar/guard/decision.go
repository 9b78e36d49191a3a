package guard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Decision is the guard's own account of one request, for a caller that
// logs it (the sidecar's access log). The guard fills it in from what it
// decided, never from the app's response (an app can send any
// X-Credbroker-Error it likes) nor from a value the caller sent: every
// string in it is a rule's configured path, a Method or a Reason*
// constant.
type Decision struct {
	// Rule is the path of the rule that matched; "" when none did (or the
	// request was refused before a rule was picked).
	Rule string
	// Method is the method that accepted or refused the request;
	// MethodNone when none was tried; "" when the guard decided nothing.
	Method Method
	// Reason is the refusal reason the guard answered with (a Reason*
	// constant, the X-Credbroker-Error it set), including an accepted
	// request the app could not take (ReasonAppUnreachable) or whose body
	// broke on the way (ReasonBadRequestBody); "" when the app answered.
	Reason string
	// AppStart is when the accepted request was passed to the app; zero
	// when it was not.
	AppStart time.Time
	// TraceID is the trace of the guard's span (WithTracerProvider); zero
	// without tracing.
	TraceID trace.TraceID
}

type decisionKey struct{}

// RecordDecision returns a copy of ctx with which ServeHTTP records its
// decision about the request into d: serve the request with
// r.WithContext(RecordDecision(r.Context(), d)). The guard writes d on the
// request's goroutine before it writes the response head (AppStart before
// the request goes to the app, Reason of an app failure before the 502 or
// 400), so a ResponseWriter wrapper may read it in WriteHeader, and the
// caller once ServeHTTP returned.
func RecordDecision(ctx context.Context, d *Decision) context.Context {
	return context.WithValue(ctx, decisionKey{}, d)
}

func decisionOf(ctx context.Context) *Decision {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	return d
}

// decide records the guard's decision about the request of ctx, when its
// caller asked for it.
func decide(ctx context.Context, ru *rule, m Method, reason string) {
	d := decisionOf(ctx)
	if d == nil {
		return
	}
	if ru != nil {
		d.Rule = ru.path
	}
	d.Method, d.Reason = m, reason
}
