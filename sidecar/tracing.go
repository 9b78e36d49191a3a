package sidecar

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
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
		key, msg, _ := strings.Cut(err.Error(), ": ")
		errs = append(errs, c.errorf("tracing."+key, "", ErrInvalidValue, "%s", msg))
	}
	return errs
}

// WithTracerProvider makes the proxy and the server trace requests (a span
// per proxied request, in the trace the app's traceparent names). nil, the
// default, traces nothing; the app's traceparent and tracestate are
// forwarded unchanged either way. With a provider, every proxied request
// takes net/http's path: the fast path carries no span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		o.tp = tp
		o.tracer = nil
		if tp != nil {
			o.tracer = tp.Tracer(tracing.ScopeName)
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
	}
}

// noteReason tells the span the reason of an answer the proxy wrote.
func noteReason(w http.ResponseWriter, reason string) {
	if tw, ok := w.(*tracedWriter); ok {
		tw.reason = reason
	}
}

// serveTraced serves a request inside a span whose parent is the app's
// traceparent, and sends the span's context upstream in its place. The
// token API is not traced (its token fetches are).
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
