package sidecar_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// grpcReceiver is an in-process OTLP/gRPC trace receiver (the collector's
// TraceService) on 127.0.0.1, keeping the spans and every export as bytes.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []*tracepb.Span
	raw   [][]byte
}

func newGRPCReceiver() *grpcReceiver {
	GinkgoHelper()
	r := &grpcReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(ln) }()
	DeferCleanup(s.Stop)
	r.addr = ln.Addr().String()
	return r
}

func (r *grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	b, _ := proto.Marshal(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw = append(r.raw, b)
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *grpcReceiver) find(name, traceID string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.Name == name && fmt.Sprintf("%x", s.TraceId) == traceID {
			out = append(out, s)
		}
	}
	return out
}

var _ = Describe("tracing over OTLP/gRPC and switched off", func() {
	It("exports a cold request's span tree over gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc), with no secret in any export", func() {
		e := newEnv(mockauth.Options{})
		recv := newGRPCReceiver()
		r := harness.StartSidecar(bin, harness.SidecarOptions{
			Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile,
			Env: harness.Env{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + recv.addr,
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
				"OTEL_BSP_SCHEDULE_DELAY":     "100",
			},
			AfterExit: func(r *harness.Sidecar) { e.secrets.ExpectNotIn(r.Session.Out.Contents(), r.Session.Err.Contents()) },
		}, fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		Eventually(func() int { c, _ := httpGet(r.Admin + "/readyz"); return c }).WithTimeout(60 * time.Second).Should(Equal(200))

		const traceID = "7cf92f3577b34da6a3ce929d0e0e4736"
		querySecret := e.secrets.Plant("query string secret")
		resp, _ := call("GET", r.Proxy+"/orders/items?sig="+querySecret, nil, map[string]string{"traceparent": "00-" + traceID + "-11f067aa0ba902b7-01"})
		Expect(resp.StatusCode).To(Equal(200))
		e.secrets.Add("access token issued", strings.TrimPrefix(e.up.last("/orders/items").Header.Get("Authorization"), "Bearer "))
		Eventually(func() []*tracepb.Span { return recv.find("credbroker.proxy", traceID) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		req := recv.find("credbroker.proxy", traceID)[0]
		Expect(spanAttrs(req)).To(HaveKeyWithValue("credbroker.route", "orders"))
		Expect(spanAttrs(req)).To(HaveKeyWithValue("http.response.status_code", "200"))
		recv.mu.Lock()
		raw := append([][]byte(nil), recv.raw...)
		recv.mu.Unlock()
		e.secrets.ExpectNotIn(raw...)
	})

	DescribeTable("stays off with an endpoint set when it is switched off, and forwards the trace context unchanged",
		func(env harness.Env, tracingKeys string) {
			e := newEnv(mockauth.Options{})
			recv := newOTLPReceiver()
			env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
			if tracingKeys == "" {
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.srv.URL
			} else {
				tracingKeys = strings.ReplaceAll(tracingKeys, "ENDPOINT", recv.srv.URL)
			}
			r := harness.StartSidecar(bin, harness.SidecarOptions{Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile, Env: env},
				fmt.Sprintf("%s\nroutes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", tracingKeys, e.up.url))
			Eventually(func() int { c, _ := httpGet(r.Admin + "/readyz"); return c }).WithTimeout(60 * time.Second).Should(Equal(200))
			const tp = "00-8cf92f3577b34da6a3ce929d0e0e4736-12f067aa0ba902b7-01"
			for _, path := range []string{"/orders/a", "/nowhere/b"} {
				resp, _ := call("GET", r.Proxy+path, nil, map[string]string{"traceparent": tp, "tracestate": "off=1"})
				Expect(resp.StatusCode).To(BeElementOf(200, 403))
			}
			Expect(e.up.last("/orders/a").Header.Get("Traceparent")).To(Equal(tp), "unchanged: no span of credbroker's")
			Expect(e.up.last("/orders/a").Header.Get("Tracestate")).To(Equal("off=1"))
			// Spans would go out every 100 ms; none does.
			Consistently(recv.bodies).WithTimeout(time.Second).Should(BeEmpty())
		},
		Entry("OTEL_TRACES_EXPORTER=none", harness.Env{"OTEL_TRACES_EXPORTER": "none"}, ""),
		Entry("OTEL_SDK_DISABLED=true over the file's endpoint", harness.Env{"OTEL_SDK_DISABLED": "true"}, "tracing: {endpoint: ENDPOINT}"),
		Entry("exporter: none in the file over OTEL_TRACES_EXPORTER=otlp", harness.Env{"OTEL_TRACES_EXPORTER": "otlp"}, "tracing: {exporter: none, endpoint: ENDPOINT}"),
	)
})
