// Package tracing sets up OpenTelemetry tracing for credbroker run: it
// merges the standard OTEL_* variables with the config file's tracing:
// block, builds the OTLP exporter (HTTP or gRPC) and the tracer provider,
// and names the spans and attributes every package uses.
//
// Tracing is off unless an exporter is chosen: OTEL_TRACES_EXPORTER=otlp
// (or exporter: otlp), or an OTLP endpoint is set. exporter none and
// OTEL_SDK_DISABLED=true (or disabled: true) always win. A variable wins
// over the config key it mirrors.
//
// The contrib autoexport package reads the same variables, but it links the
// metric and log SDKs and the Prometheus and stdout exporters as well (the
// package registers all three signals) and cannot take an endpoint from a
// config file; this package chooses between the two trace exporters itself.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Exporters and protocols.
const (
	ExporterOTLP = "otlp"
	ExporterNone = "none"

	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Samplers (OTEL_TRACES_SAMPLER values).
const (
	SamplerAlwaysOn           = "always_on"
	SamplerAlwaysOff          = "always_off"
	SamplerTraceIDRatio       = "traceidratio"
	SamplerParentAlwaysOn     = "parentbased_always_on"
	SamplerParentAlwaysOff    = "parentbased_always_off"
	SamplerParentTraceIDRatio = "parentbased_traceidratio"
	DefaultSampler            = SamplerParentAlwaysOn
)

// DefaultServiceName is service.name unless configured.
const DefaultServiceName = "credbroker"

// ScopeName names the tracer of every span credbroker makes.
const ScopeName = "github.com/credbroker/credbroker"

// Flush bounds the export of buffered spans when a run ends.
const Flush = 5 * time.Second

const (
	otlpHTTPTracesPath            = "/v1/traces"
	envSDKDisabled                = "OTEL_SDK_DISABLED"
	envTracesExporter             = "OTEL_TRACES_EXPORTER"
	envEndpoint                   = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint             = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol                   = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol             = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envServiceName                = "OTEL_SERVICE_NAME"
	envSampler                    = "OTEL_TRACES_SAMPLER"
	envSamplerArg                 = "OTEL_TRACES_SAMPLER_ARG"
	envResourceAttributes         = "OTEL_RESOURCE_ATTRIBUTES"
	maxResourceAttributes         = 64
	maxResourceAttributeValueSize = 1 << 10
)

// Samplers lists the sampler names both sources accept.
var Samplers = []string{SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio, SamplerParentAlwaysOn, SamplerParentAlwaysOff, SamplerParentTraceIDRatio}

// Settings are tracing settings from one source: the config file's
// tracing: block or the OTEL_* variables. Empty fields are unset.
type Settings struct {
	Disabled           bool
	Exporter           string // otlp, none
	Endpoint           string // the OTLP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
	Protocol           string // http/protobuf, grpc
	ServiceName        string
	Sampler            string
	SamplerArg         string
	ResourceAttributes map[string]string
	// endpointFromEnv: the endpoint came from a variable;
	// endpointTraces: from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full
	// traces URL used as it is.
	endpointFromEnv, endpointTraces bool
}

// Enabled reports whether these (resolved) settings export spans.
func (s Settings) Enabled() bool {
	if s.Disabled || s.Exporter == ExporterNone {
		return false
	}
	return s.Exporter == ExporterOTLP || s.Endpoint != ""
}

// FromEnv reads the OTEL_* variables through lookup (os.LookupEnv in
// cmd/credbroker). An invalid value is an error that names the variable.
func FromEnv(lookup func(string) (string, bool)) (Settings, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	var s Settings
	if v := get(envSDKDisabled); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("%s: want true or false%s", envSDKDisabled, notRepeated)
		}
		s.Disabled = b
	}
	s.Exporter = strings.ToLower(get(envTracesExporter))
	if err := checkExporter(s.Exporter); err != nil {
		return s, fmt.Errorf("%s: %w", envTracesExporter, err)
	}
	if v := get(envTracesEndpoint); v != "" {
		s.Endpoint, s.endpointFromEnv, s.endpointTraces = v, true, true
	} else if v := get(envEndpoint); v != "" {
		s.Endpoint, s.endpointFromEnv = v, true
	}
	if s.Endpoint != "" {
		if err := checkEndpoint(s.Endpoint); err != nil {
			return s, fmt.Errorf("OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT: %w", err)
		}
	}
	s.Protocol = get(envTracesProtocol)
	if s.Protocol == "" {
		s.Protocol = get(envProtocol)
	}
	if err := checkProtocol(s.Protocol); err != nil {
		return s, fmt.Errorf("OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: %w", err)
	}
	s.ServiceName = get(envServiceName)
	s.Sampler = strings.ToLower(get(envSampler))
	s.SamplerArg = get(envSamplerArg)
	if err := checkSampler(s.Sampler, s.SamplerArg); err != nil {
		return s, fmt.Errorf("%s/%s: %w", envSampler, envSamplerArg, err)
	}
	if v := get(envResourceAttributes); v != "" {
		attrs, err := parseResourceAttributes(v)
		if err != nil {
			return s, fmt.Errorf("%s: %w", envResourceAttributes, err)
		}
		s.ResourceAttributes = attrs
	}
	return s, nil
}

// KeyError is a problem of one key of the config file's tracing: block.
type KeyError struct {
	Key string // the key under tracing:, e.g. "sampler"
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// Check validates settings from the config file; a problem is a *KeyError
// that names the key.
func (s Settings) Check() error {
	if err := checkExporter(s.Exporter); err != nil {
		return &KeyError{"exporter", err}
	}
	if s.Endpoint != "" {
		if err := checkEndpoint(s.Endpoint); err != nil {
			return &KeyError{"endpoint", err}
		}
	}
	if err := checkProtocol(s.Protocol); err != nil {
		return &KeyError{"protocol", err}
	}
	if err := checkSampler(s.Sampler, s.SamplerArg); err != nil {
		return &KeyError{"sampler", err}
	}
	if len(s.ResourceAttributes) > maxResourceAttributes {
		return &KeyError{"resource_attributes", fmt.Errorf("at most %d", maxResourceAttributes)}
	}
	return nil
}

// Resolve merges the config file's settings with the variables': a set
// variable wins over its key; disabled and exporter none from either
// source always win.
func Resolve(file, env Settings) Settings {
	out := file
	out.endpointFromEnv, out.endpointTraces = false, false
	out.Disabled = file.Disabled || env.Disabled
	if file.Exporter == ExporterNone || env.Exporter == ExporterNone {
		out.Exporter = ExporterNone
	} else if env.Exporter != "" {
		out.Exporter = env.Exporter
	}
	if env.Endpoint != "" {
		out.Endpoint, out.endpointFromEnv, out.endpointTraces = env.Endpoint, true, env.endpointTraces
	}
	pick := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	pick(&out.Protocol, env.Protocol)
	pick(&out.ServiceName, env.ServiceName)
	if env.Sampler != "" {
		out.Sampler, out.SamplerArg = env.Sampler, env.SamplerArg
	} else {
		pick(&out.SamplerArg, env.SamplerArg)
	}
	if len(env.ResourceAttributes) > 0 {
		m := make(map[string]string, len(file.ResourceAttributes)+len(env.ResourceAttributes))
		for k, v := range file.ResourceAttributes {
			m[k] = v
		}
		for k, v := range env.ResourceAttributes {
			m[k] = v
		}
		out.ResourceAttributes = m
	}
	return out
}

// notRepeated ends a message about a bad value: an OTEL_* variable or a
// tracing: key may hold a misplaced secret (a header, a token), and
// messages reach logs and CI output.
const notRepeated = " (the value is not repeated here: a misplaced secret must not reach a log)"

func checkExporter(v string) error {
	switch v {
	case "", ExporterOTLP, ExporterNone:
		return nil
	}
	return fmt.Errorf("want otlp or none (credbroker exports traces over OTLP only)%s", notRepeated)
}

func checkProtocol(v string) error {
	switch v {
	case "", ProtocolHTTP, ProtocolGRPC:
		return nil
	}
	return fmt.Errorf("want http/protobuf or grpc%s", notRepeated)
}

func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("want a URL without user info, query or fragment (headers go in OTEL_EXPORTER_OTLP_HEADERS)")
	}
	return nil
}

func checkSampler(name, arg string) error {
	switch name {
	case "", SamplerAlwaysOn, SamplerAlwaysOff, SamplerParentAlwaysOn, SamplerParentAlwaysOff:
		return nil
	case SamplerTraceIDRatio, SamplerParentTraceIDRatio:
		if arg == "" {
			return nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("ratio: want a number from 0 to 1%s", notRepeated)
		}
		return nil
	}
	return fmt.Errorf("want one of %s%s", strings.Join(Samplers, ", "), notRepeated)
}

// sampler builds the resolved sampler (default parentbased_always_on).
func (s Settings) sampler() sdktrace.Sampler {
	ratio := 1.0
	if s.SamplerArg != "" {
		if f, err := strconv.ParseFloat(s.SamplerArg, 64); err == nil {
			ratio = f
		}
	}
	switch s.Sampler {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample()
	case SamplerAlwaysOff:
		return sdktrace.NeverSample()
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(ratio)
	case SamplerParentAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case SamplerParentTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// parseResourceAttributes reads key1=value1,key2=value2 with percent-encoded
// values (the OTEL_RESOURCE_ATTRIBUTES format).
func parseResourceAttributes(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("want key=value pairs separated by commas%s", notRepeated)
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("key %q: bad percent-encoding", k)
		}
		if len(dec) > maxResourceAttributeValueSize {
			return nil, fmt.Errorf("key %q: value over %d bytes", k, maxResourceAttributeValueSize)
		}
		out[k] = dec
		if len(out) > maxResourceAttributes {
			return nil, fmt.Errorf("more than %d attributes", maxResourceAttributes)
		}
	}
	return out, nil
}

// Provider is a running tracer provider; Shutdown flushes it.
type Provider struct {
	trace.TracerProvider
	sdk     *sdktrace.TracerProvider
	sampler sdktrace.Sampler
}

// Sampler is the provider's sampler (nil when tracing is off): the proxy's
// fast path asks it whether a request would be recorded.
func (p *Provider) Sampler() sdktrace.Sampler {
	if p == nil {
		return nil
	}
	return p.sampler
}

// Shutdown exports what is buffered and stops the exporter (bounded by
// ctx). Safe to call on a nil or disabled Provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p != nil && p.sdk != nil }

var errorHandlerOnce sync.Once

// New builds the tracer provider of s (resolved settings): a no-op one
// when s does not enable tracing. version is the service.version. The
// exporter reads the rest of its variables (OTEL_EXPORTER_OTLP_HEADERS,
// _TIMEOUT, _COMPRESSION, _CERTIFICATE, …, and OTEL_BSP_* for batching).
func New(ctx context.Context, s Settings, version string, log *slog.Logger, opts ...sdktrace.TracerProviderOption) (*Provider, error) {
	if !s.Enabled() {
		return &Provider{TracerProvider: Noop()}, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	errorHandlerOnce.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: exporting spans failed", "err", err)
		}))
	})
	exp, err := newExporter(ctx, s, log)
	if err != nil {
		return nil, err
	}
	res, err := s.resource(version)
	if err != nil {
		return nil, err
	}
	sampler := s.sampler()
	all := append([]sdktrace.TracerProviderOption{
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(idGenerator{}),
	}, opts...)
	sdk := sdktrace.NewTracerProvider(all...)
	return &Provider{TracerProvider: sdk, sdk: sdk, sampler: sampler}, nil
}

// NewWithProcessor builds an enabled provider that hands spans to sp (tests:
// tracetest.SpanRecorder) with s's resource and sampler, or sampler when
// not nil.
func NewWithProcessor(s Settings, version string, sp sdktrace.SpanProcessor, sampler sdktrace.Sampler) (*Provider, error) {
	res, err := s.resource(version)
	if err != nil {
		return nil, err
	}
	if sampler == nil {
		sampler = s.sampler()
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithSampler(sampler), sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(idGenerator{}))
	return &Provider{TracerProvider: sdk, sdk: sdk, sampler: sampler}, nil
}

func newExporter(ctx context.Context, s Settings, log *slog.Logger) (sdktrace.SpanExporter, error) {
	proto := s.Protocol
	if proto == "" {
		proto = ProtocolHTTP
	}
	c, err := newOTLPClient(s, proto, os.LookupEnv, log)
	if err != nil {
		return nil, err
	}
	return otlptrace.New(ctx, c)
}

func (s Settings) resource(version string) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, len(s.ResourceAttributes)+2)
	for k, v := range s.ResourceAttributes {
		if k == "service.name" && s.ServiceName != "" {
			continue // OTEL_SERVICE_NAME wins over service.name in the attributes
		}
		attrs = append(attrs, attribute.String(k, v))
	}
	name := s.ServiceName
	if name == "" {
		name = s.ResourceAttributes["service.name"]
	}
	if name == "" {
		name = DefaultServiceName
	}
	attrs = append(attrs, attribute.String("service.name", name))
	if _, ok := s.ResourceAttributes["service.version"]; !ok && version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	return resource.NewSchemaless(attrs...), nil
}

// Propagator is the W3C trace context (traceparent, tracestate) that every
// traced hop reads and writes.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Noop returns a provider that records nothing.
func Noop() trace.TracerProvider { return noopProvider }
