package connector

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

// HeartbeatTracerProvider makes every beat a span
// (credbroker.connector.heartbeat) with its outcome; nil (the default)
// makes none. No URL (the info URL may carry a token) goes into it.
func HeartbeatTracerProvider(tp trace.TracerProvider) HeartbeatOption {
	return func(o *heartbeatOptions) {
		o.tracer = nil
		if tp != nil {
			o.tracer = tp.Tracer(tracing.ScopeName)
		}
	}
}

func endHeartbeatSpan(span trace.Span, st HeartbeatStatus) {
	if st.ConsecutiveFailures > 0 {
		span.SetAttributes(tracing.AttrErrorType.String("info-failed"))
		span.SetStatus(codes.Error, "info-failed")
	}
	span.End()
}
