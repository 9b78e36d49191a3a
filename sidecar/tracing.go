package sidecar

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/tracing"
)

// TracingConfig is the config file's tracing: block. Each key mirrors an
// OTEL_* variable, and a set variable wins over its key; exporter: none
// and disabled: true (or OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true)
// always win. Tracing is off unless exporter is otlp or an endpoint is set
// (docs/observability.md). It is read at start: a reload does not change it.
type TracingConfig struct {
	// Disabled turns tracing off whatever else is set (OTEL_SDK_DISABLED).
	Disabled bool `yaml:"disabled"`
	// Exporter is otlp or none (OTEL_TRACES_EXPORTER).
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP receiver's base URL, e.g. http://127.0.0.1:4318
	// (OTEL_EXPORTER_OTLP_ENDPOINT; /v1/traces is appended for
	// http/protobuf).
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf (default) or grpc
	// (OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string `yaml:"protocol"`
	// ServiceName is service.name (OTEL_SERVICE_NAME; default credbroker).
	ServiceName string `yaml:"service_name"`
	// Sampler is the sampler (OTEL_TRACES_SAMPLER; default
	// parentbased_always_on).
	Sampler string `yaml:"sampler"`
	// SamplerArg is the ratio of the traceidratio samplers
	// (OTEL_TRACES_SAMPLER_ARG).
	SamplerArg string `yaml:"sampler_arg"`
	// ResourceAttributes are added to the resource
	// (OTEL_RESOURCE_ATTRIBUTES, whose keys win).
	ResourceAttributes map[string]string `yaml:"resource_attributes"`
}

// Settings returns the block as tracing settings.
func (t TracingConfig) Settings() tracing.Settings {
	return tracing.Settings{
		Disabled: t.Disabled, Exporter: strings.ToLower(t.Exporter), Endpoint: t.Endpoint, Protocol: t.Protocol,
		ServiceName: t.ServiceName, Sampler: strings.ToLower(t.Sampler), SamplerArg: t.SamplerArg,
		ResourceAttributes: t.ResourceAttributes,
	}
}

func (c *Config) checkTracing(errs ConfigErrors) ConfigErrors {
	if err := c.Tracing.Settings().Check(); err != nil {
		var ke *tracing.KeyError
		if !errors.As(err, &ke) {
			ke = &tracing.KeyError{Err: err}
		}
		errs = append(errs, c.errorf("tracing."+ke.Key, "", ErrInvalidValue, "%s", ke.Err))
	}
	return errs
}

// WithTracerProvider makes the proxy and the server trace requests (a span
// per proxied request, in the trace the app's traceparent names). nil, the
// default, traces nothing; the app's traceparent and tracestate are
// forwarded unchanged either way. A request the provider's sampler records
// takes net/http's path (the fast path carries no span); one it drops
// stays on the fast path, which sends upstream the traceparent of the
// unrecorded span. That needs the sampler: a provider with a Sampler
// method (*tracing.Provider); with any other, every request takes
// net/http's path.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		o.tp = tp
		o.tracer, o.sampler = nil, nil
		if tp != nil {
			o.tracer = tp.Tracer(tracing.ScopeName)
		}
		if s, ok := tp.(interface{ Sampler() sdktrace.Sampler }); ok {
			o.sampler = s.Sampler()
		}
	}
}

// tracedWriter records what the span of a proxied request reports: the
// final status, the reason of an answer the proxy wrote itself, and the
// route.
type tracedWriter struct {
	http.ResponseWriter
	status int
	reason string
	route  *route
}

func (w *tracedWriter) WriteHeader(code int) {
	if code >= 200 && w.status == 0 {
		w.status = code
		if w.reason == "" {
			w.reason = w.Header().Get(HeaderError) // set on an upstream's answer (reauth.go)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tracedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushes, full duplex, upgrades).
func (w *tracedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noteRoute tells the span which route a request went to (a no-op unless
// the request is traced).
func noteRoute(w http.ResponseWriter, r *route) {
	if tw, ok := w.(*tracedWriter); ok {
		tw.route = r
		w = tw.ResponseWriter
	}
	accessNoteRoute(w, r)
}

// noteReason tells the span the reason of an answer the proxy wrote.
func noteReason(w http.ResponseWriter, reason string) {
	if tw, ok := w.(*tracedWriter); ok {
		tw.reason = reason
		w = tw.ResponseWriter
	}
	accessNoteReason(w, reason)
}

// serveTraced serves a request inside a span whose parent is the app's
// traceparent, and sends the span's context upstream in its place. The
// request serveHTTP gets carries the span in its context: everything below
// it (route.serve, refusals, the ReverseProxy's hooks, an access log)
// reads its trace and span id with trace.SpanContextFromContext, sampled
// or not. The token API is not traced (its token fetches are).
func (p *Proxy) serveTraced(w http.ResponseWriter, req *http.Request) {
	if !req.URL.IsAbs() && req.URL.Host == "" && strings.HasPrefix(req.URL.EscapedPath(), "/.credbroker/") {
		p.serveHTTP(w, req)
		return
	}
	carrier := propagation.HeaderCarrier(req.Header)
	ctx := tracing.Propagator.Extract(req.Context(), carrier)
	ctx, span := p.o.tracer.Start(ctx, tracing.SpanProxy, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.AttrMethod.String(tracing.Method(req.Method))))
	defer span.End()
	tracing.Propagator.Inject(ctx, carrier)
	setAccessTraceID(w, span.SpanContext().TraceID()) // a root request's trace id is the span's
	tw := &tracedWriter{ResponseWriter: w}
	p.serveHTTP(tw, req.WithContext(ctx))
	if !span.IsRecording() {
		return
	}
	if r := tw.route; r != nil {
		span.SetAttributes(tracing.AttrRoute.String(r.name), tracing.AttrAuth.String(r.cfg.Auth.Type))
		if r.target != nil && r.dest == nil {
			span.SetAttributes(tracing.AttrServerAddr.String(r.target.Hostname()))
		}
	}
	if tw.status != 0 {
		span.SetAttributes(tracing.AttrStatus.Int(tw.status))
	}
	if tw.reason != "" {
		span.SetAttributes(tracing.AttrReason.String(tw.reason))
	}
	if tw.status >= 500 {
		span.SetStatus(codes.Error, tw.reason)
	}
}

// fastTraceState is what the fast path keeps of a traced request.
type fastTraceState struct {
	// traceLine is the traceparent field sent upstream for a request the
	// sampler dropped (the app's own is not forwarded); empty otherwise.
	traceLine []byte
	// pinned: the sampler records this root request, decided on pinTID;
	// net/http's path must start its span with that trace id.
	pinned bool
	pinTID trace.TraceID
}

// fastTrace asks the sampler about a request of the fast path, as
// serveTraced's span would: with the app's traceparent as remote parent
// or, without one, a fresh trace id. When the sampler records it, it
// reports false (net/http's path makes the span, on the same trace id).
// When it drops it, the request stays here: the app's traceparent is
// replaced by the one the SDK would send for the unrecorded span (same
// trace, a new span id, the sampled flag cleared, tracestate untouched),
// and ctx carries that span context (a token fetch is its child).
func (p *Proxy) fastTrace(fc *fastConn) (ctx context.Context, ok bool) {
	st := &fc.fastTraceState
	st.traceLine, st.pinned = st.traceLine[:0], false
	if p.o.sampler == nil {
		return nil, false
	}
	q := &fc.req
	idx := -1
	for i := range q.n {
		if f := &q.hdr[i]; len(f.name) == len("traceparent") && equalFold(f.name, "traceparent") {
			if idx >= 0 {
				return nil, false // two: net/http's path reads them as the SDK does
			}
			idx = i
		}
	}
	params := sdktrace.SamplingParameters{ParentContext: context.Background(), Name: tracing.SpanProxy, Kind: trace.SpanKindServer}
	var parent trace.SpanContext
	if idx >= 0 {
		var ver byte
		var valid bool
		if parent, ver, valid = parseTraceparent(q.hdr[idx].val); !valid || ver != 0 {
			return nil, false // net/http's path: the SDK decides what it is
		}
		params.ParentContext = trace.ContextWithRemoteSpanContext(context.Background(), parent)
		params.TraceID = parent.TraceID()
	} else {
		params.TraceID = tracing.NewTraceID()
	}
	if p.o.sampler.ShouldSample(params).Decision != sdktrace.Drop {
		if idx < 0 {
			st.pinned, st.pinTID = true, params.TraceID
		}
		return nil, false
	}
	if idx >= 0 {
		q.hdr[idx].drop = true
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    params.TraceID,
		SpanID:     tracing.NewSpanID(),
		TraceFlags: parent.TraceFlags() & trace.FlagsRandom, // sampled cleared
		TraceState: parent.TraceState(),
	})
	st.traceLine = appendTraceparent(append(st.traceLine, "traceparent: "...), sc)
	st.traceLine = append(st.traceLine, "\r\n"...)
	return trace.ContextWithSpanContext(fc.ctx, sc), true
}

// handlerContext is the context of a request the fast loop hands to the
// net/http handler: a root request the sampler records keeps the trace id
// it was sampled on.
func (fc *fastConn) handlerContext() context.Context {
	if fc.fastScratch != nil && fc.pinned {
		fc.pinned = false
		return tracing.ContextWithTraceID(fc.ctx, fc.pinTID)
	}
	return fc.ctx
}

const hexDigits = "0123456789abcdef"

// appendTraceparent appends a version-00 traceparent value for sc.
func appendTraceparent(b []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, "00-"...)
	for _, c := range tid {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	b = append(b, '-')
	for _, c := range sid {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	f := byte(sc.TraceFlags())
	return append(b, '-', hexDigits[f>>4], hexDigits[f&0xf])
}

// parseTraceparent reads a traceparent as the SDK's W3C propagator does
// (https://www.w3.org/TR/trace-context/#traceparent-header): version,
// trace id, parent id and flags in lower-case hex separated by '-';
// version ff is invalid, version 00 is exactly 55 bytes with flags at most
// 03, a later version may add fields after a '-'; neither id may be zero.
// It is the one reader of the header: the fast path's sampling (version 00
// only; anything else is left to the SDK on net/http's path) and the
// access log's trace id.
func parseTraceparent(v []byte) (sc trace.SpanContext, version byte, ok bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return trace.SpanContext{}, 0, false
	}
	var ver, fl [1]byte
	if !unhex(ver[:], v[0:2]) || ver[0] == 0xff || !unhex(fl[:], v[53:55]) {
		return trace.SpanContext{}, 0, false
	}
	if ver[0] == 0 && (len(v) != 55 || fl[0] > 3) || len(v) > 55 && v[55] != '-' {
		return trace.SpanContext{}, 0, false
	}
	var cfg trace.SpanContextConfig
	if !unhex(cfg.TraceID[:], v[3:35]) || !unhex(cfg.SpanID[:], v[36:52]) {
		return trace.SpanContext{}, 0, false
	}
	cfg.TraceFlags, cfg.Remote = trace.TraceFlags(fl[0]), true
	sc = trace.NewSpanContext(cfg)
	return sc, ver[0], sc.IsValid()
}

func unhex(dst, src []byte) bool {
	for i := range dst {
		hi, lo := hexVal(src[2*i]), hexVal(src[2*i+1])
		if hi > 15 || lo > 15 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexVal(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}
