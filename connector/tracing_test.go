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
	"github.com/credbroker/credbroker/mockauth"
)

// TestHeartbeatSpans: with a tracer provider every beat is a span; a
// failed one says so by class, and no URL is in it.
func TestHeartbeatSpans(t *testing.T) {
	g := NewWithT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := startConnector(t, mockauth.Options{})
	conn, err := ecClient(t, srv).Connect(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())

	ok := ecClient(t, srv, connector.WithCertificate(conn.Pairing.TLSCertificate()), connector.WithRetry(1, time.Millisecond))
	hb, err := connector.NewHeartbeat(ok, conn.InfoURL, connector.HeartbeatTracerProvider(tp))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hb.Beat(ctx(t)).Err).NotTo(HaveOccurred())

	noCert := ecClient(t, srv, connector.WithRetry(1, time.Millisecond))
	bad, err := connector.NewHeartbeat(noCert, conn.InfoURL, connector.HeartbeatTracerProvider(tp))
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
	g.Expect(dump).NotTo(ContainSubstring(srv.Info().GatewayURL))
	g.Expect(dump).NotTo(ContainSubstring("/v1/"))
}
