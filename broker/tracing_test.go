package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/tracing"
)

func TestRenewAndPairSpans(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c, err := New(Options{}, WithTracerProvider(tp))
	g.Expect(err).NotTo(HaveOccurred())

	fail := true
	r := tracedRenewer{tracer: c.tracer(), name: "connector", Renewer: certwatch.RenewerFunc(func(context.Context, tls.Certificate) ([]byte, []byte, []byte, error) {
		if fail {
			return nil, nil, nil, errors.New("connector said no: https://connector.example/renew?token=PLANTED")
		}
		return []byte("crt"), []byte("key"), nil, nil
	})}
	_, _, _, err = r.Renew(context.Background(), tls.Certificate{})
	g.Expect(err).To(HaveOccurred())
	fail = false
	crt, _, _, err := r.Renew(context.Background(), tls.Certificate{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(crt)).To(Equal("crt"))

	_, end := c.pairSpan(context.Background(), "connector")
	end(errors.New("one-time token used"))

	spans := rec.Ended()
	g.Expect(spans).To(HaveLen(3))
	g.Expect(spans[0].Name()).To(Equal(tracing.SpanRenew))
	g.Expect(spans[0].Status()).To(Equal(sdktrace.Status{Code: codes.Error, Description: "renew-failed"}))
	g.Expect(spans[1].Name()).To(Equal(tracing.SpanRenew))
	g.Expect(spans[1].Status().Code).To(Equal(codes.Unset))
	g.Expect(spans[2].Name()).To(Equal(tracing.SpanPair))
	g.Expect(spans[2].Status().Description).To(Equal("pair-failed"))
	for _, s := range spans {
		g.Expect(s.Attributes()).To(ContainElement(tracing.AttrCertificate.String("connector")))
		for _, kv := range s.Attributes() {
			g.Expect(kv.Value.Emit()).NotTo(ContainSubstring("PLANTED"))
		}
	}

	// Without a provider nothing is made.
	off, err := New(Options{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(off.tracer()).To(BeNil())
	ctx := context.Background()
	pctx, end2 := off.pairSpan(ctx, "x")
	end2(nil)
	g.Expect(pctx).To(Equal(ctx))
}

// TestStartTracing: the config file's tracing: block turns tracing on, a
// variable wins over it, none wins from either side.
func TestStartTracing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("tracing: {endpoint: 'http://127.0.0.1:1', sampler: always_off}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		on   bool
	}{
		{"no file, no variables", Options{}, false},
		{"the file's endpoint", Options{ConfigFile: cfg}, true},
		{"OTEL_TRACES_EXPORTER=none wins", Options{ConfigFile: cfg, Tracing: tracing.Settings{Exporter: tracing.ExporterNone}}, false},
		{"OTEL_SDK_DISABLED wins", Options{ConfigFile: cfg, Tracing: tracing.Settings{Disabled: true}}, false},
		{"a variable alone", Options{Tracing: tracing.Settings{Exporter: tracing.ExporterOTLP}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := New(tc.o)
			g.Expect(err).NotTo(HaveOccurred())
			p, err := c.startTracing(context.Background())
			g.Expect(err).NotTo(HaveOccurred())
			defer p.Shutdown(context.Background())
			g.Expect(p.Enabled()).To(Equal(tc.on))
			if tc.on && tc.o.ConfigFile != "" {
				g.Expect(p.Sampler().Description()).To(Equal("AlwaysOffSampler"), "the file's sampler")
			}
		})
	}
}
