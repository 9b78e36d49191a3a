package tracing

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// idGenerator makes random trace and span ids, and uses the trace id a
// context was given by ContextWithTraceID for a root span: the proxy's
// fast path draws a root request's trace id to ask the sampler, and the
// span net/http's path then makes for it must have that id (or the
// sampler would decide a second time on another one).
type idGenerator struct{}

type traceIDKey struct{}

// ContextWithTraceID makes the root span started in ctx use tid.
func ContextWithTraceID(ctx context.Context, tid trace.TraceID) context.Context {
	return context.WithValue(ctx, traceIDKey{}, tid)
}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID); ok && tid.IsValid() {
		return tid, NewSpanID()
	}
	return NewTraceID(), NewSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return NewSpanID() }

// NewTraceID returns a random, valid trace id. Safe for concurrent use;
// allocates nothing.
func NewTraceID() trace.TraceID {
	var t trace.TraceID
	for !t.IsValid() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// NewSpanID returns a random, valid span id.
func NewSpanID() trace.SpanID {
	var s trace.SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}
