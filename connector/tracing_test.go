package connector_test

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/tracing"
)

// TestHeartbeatSpans: with a tracer provider every beat is a span; a
// failed one says so by class, and no URL is in it.
func TestHeartbeatSpans(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")

	ok := f.client(connector.WithCertificate(p.TLSCertificate()), connector.WithRetry(1, time.Millisecond))
	hb, err := connector.NewHeartbeat(ok, p.API.InfoURL, connector.HeartbeatTracerProvider(tp))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hb.Beat(ctx(t)).Err).NotTo(HaveOccurred())

	noCert := f.client(connector.WithRetry(1, time.Millisecond))
	bad, err := connector.NewHeartbeat(noCert, p.API.InfoURL, connector.HeartbeatTracerProvider(tp))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bad.Beat(ctx(t)).Err).To(HaveOccurred())

	spans := rec.Ended()
	g.Expect(spans).To(HaveLen(2))
	for _, s := range spans {
		g.Expect(s.Name()).To(Equal(tracing.SpanHeartbeat))
	}
	g.Expect(spans[0].Status().Code).To(Equal(codes.Unset))
	g.Expect(spans[1].Status().Code).To(Equal(codes.Error))
	g.Expect(spans[1].Status().Description).To(Equal("info-failed"))
	dump := fmt.Sprint(spans[0].Attributes(), spans[1].Attributes(), spans[1].Status(), spans[1].Events())
	g.Expect(dump).NotTo(ContainSubstring(f.URL))
	g.Expect(dump).NotTo(ContainSubstring("/v1/"))
}
