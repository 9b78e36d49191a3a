package broker

import (
	"context"
	"crypto/tls"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/buildinfo"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/tracing"
	"github.com/credbroker/credbroker/sidecar"
)

// WithTracerProvider sets the tracer provider of every span the broker
// and what it builds make (proxy, token fetches, renewal, pairing,
// heartbeat, the inbound guard), instead of the one Run builds from
// Options.Tracing and the config file. For tests and embedders.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// startTracing builds the tracer provider of a run from the OTEL_*
// variables (Options.Tracing) and the config file's tracing: block (a
// variable wins over its key). A config file that does not parse is left
// to Load to report.
func (c *Broker) startTracing(ctx context.Context) (*tracing.Provider, error) {
	var file tracing.Settings
	if c.o.ConfigFile != "" {
		if b, err := inputfile.Read(c.o.ConfigFile); err == nil {
			if cfg, err := sidecar.ParseConfig(b, "config "+c.o.ConfigFile); err == nil {
				file = cfg.Tracing.Settings()
			}
		}
	}
	s := tracing.Resolve(file, c.o.Tracing)
	p, err := tracing.New(ctx, s, buildinfo.Get().Version, c.log)
	if err != nil {
		return nil, configErrorf("tracing: %v", err)
	}
	if p.Enabled() {
		c.log.Info("tracing on", "protocol", s.Protocol, "sampler", s.Sampler)
	}
	return p, nil
}

// tracer is the broker's tracer; nil when tracing is off.
func (c *Broker) tracer() trace.Tracer {
	if c.tp == nil {
		return nil
	}
	return c.tp.Tracer(tracing.ScopeName)
}

// tracedRenewer makes every renewal through the connector a span.
type tracedRenewer struct {
	certwatch.Renewer
	tracer trace.Tracer
	name   string
}

func (r tracedRenewer) Renew(ctx context.Context, current tls.Certificate) ([]byte, []byte, []byte, error) {
	ctx, span := r.tracer.Start(ctx, tracing.SpanRenew, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.AttrCertificate.String(r.name)))
	defer span.End()
	crt, key, ca, err := r.Renewer.Renew(ctx, current)
	if err != nil {
		span.SetAttributes(tracing.AttrErrorType.String("renew-failed"))
		span.SetStatus(codes.Error, "renew-failed")
	}
	return crt, key, ca, err
}

// pairSpan starts the span of a pairing; end reports its outcome.
func (c *Broker) pairSpan(ctx context.Context, name string) (context.Context, func(error)) {
	t := c.tracer()
	if t == nil {
		return ctx, func(error) {}
	}
	ctx, span := t.Start(ctx, tracing.SpanPair, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.AttrCertificate.String(name)))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(tracing.AttrErrorType.String("pair-failed"))
			span.SetStatus(codes.Error, "pair-failed")
		}
		span.End()
	}
}
