package sidecar_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// otlpReceiver is an in-process OTLP/HTTP trace receiver: it decodes every
// ExportTraceServiceRequest and keeps the spans and the raw bodies.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []string // service.name of each export's resources
	raw   [][]byte
}

func newOTLPReceiver() *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
		if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		var ex coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &ex); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.raw = append(r.raw, body)
		for _, rs := range ex.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					r.res = append(r.res, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	DeferCleanup(r.srv.Close)
	return r
}

// find returns the spans named name in the trace traceID (hex; "" any).
func (r *otlpReceiver) find(name, traceID string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.Name == name && (traceID == "" || fmt.Sprintf("%x", s.TraceId) == traceID) {
			out = append(out, s)
		}
	}
	return out
}

func (r *otlpReceiver) bodies() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.raw...)
}

func spanAttrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.Key] = v.GetStringValue()
		default:
			m[kv.Key] = fmt.Sprint(v.GetIntValue())
		}
	}
	return m
}

var _ = Describe("tracing (OpenTelemetry over OTLP/HTTP)", func() {
	It("forwards the app's traceparent and tracestate unchanged when tracing is off", func() {
		e := newEnv(mockauth.Options{})
		up := newUpstreamProto(e.upCA, e.clientCAs, e.oauthSec, e.secrets, false) // HTTP/1.1: the fast path's
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: public, upstream: %[1]s/public, auth: {type: none}}
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
`, up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(60 * time.Second).Should(Equal(200))
		const traceparent = "00-8bf92f3577b34da6a3ce929d0e0e4736-30f067aa0ba902b7-01"
		const tracestate = "a=1,b=2"
		// orders: net/http's path, whose answer also tells the pool that the
		// upstream speaks HTTP/1.1; then public: the fast path.
		for _, path := range []string{"/orders/x", "/public/x"} {
			resp, _ := call("GET", sc.proxy+path, nil, map[string]string{"traceparent": traceparent, "tracestate": tracestate})
			Expect(resp.StatusCode).To(Equal(200))
			r := up.last(path)
			Expect(r.Header.Values("Traceparent")).To(Equal([]string{traceparent}), path)
			Expect(r.Header.Values("Tracestate")).To(Equal([]string{tracestate}), path)
		}
		Eventually(func() string { return string(sc.get("/metrics")) }).Should(ContainSubstring(`credbroker_proxy_fast_path_requests_total{route="public"} 1`), "the public route's request took the fast path")
		Expect(string(sc.get("/metrics"))).To(ContainSubstring(`credbroker_proxy_fast_path_requests_total{route="orders"} 0`), "the orders route's took net/http's")
	})

	It("exports the span tree of a cold request and of a refused one, with no secret in any span", func() {
		e := newEnv(mockauth.Options{})
		info := e.mock.Info()
		recv := newOTLPReceiver()
		r := harness.StartSidecar(bin, harness.SidecarOptions{
			Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile,
			Env: harness.Env{
				"OTEL_EXPORTER_OTLP_ENDPOINT": recv.srv.URL,
				"OTEL_SERVICE_NAME":           "e2e-credbroker",
				"OTEL_BSP_SCHEDULE_DELAY":     "100",
			},
			AfterExit: func(r *harness.Sidecar) { e.secrets.ExpectNotIn(r.Session.Out.Contents(), r.Session.Err.Contents()) },
		}, fmt.Sprintf(`
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
`, e.up.url, filepath.Join(e.dir, "connector"), e.pairingURLFile("app-trace")))
		Eventually(func() int { c, _ := httpGet(r.Admin + "/readyz"); return c }).WithTimeout(60 * time.Second).Should(Equal(200))

		// A cold request: the tenant's token is not cached yet, so this
		// request's token fetch is a child of its span.
		const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
		const parent = "10f067aa0ba902b7"
		querySecret := e.secrets.Plant("query string secret")
		appToken := e.secrets.Plant("app's own token")
		resp, _ := call("GET", r.Proxy+"/orders/items?sig="+querySecret, nil, map[string]string{
			"X-Tenant": info.Tenants[1].Subdomain, "Authorization": "Bearer " + appToken,
			"traceparent": "00-" + traceID + "-" + parent + "-01", "tracestate": "e2e=1",
		})
		Expect(resp.StatusCode).To(Equal(200))
		up := e.up.last("/orders/items")
		e.secrets.Add("access token issued", strings.TrimPrefix(up.Header.Get("Authorization"), "Bearer "))

		upHost, _, err := net.SplitHostPort(e.up.host)
		Expect(err).NotTo(HaveOccurred())
		var req *tracepb.Span
		Eventually(func() []*tracepb.Span { return recv.find("credbroker.proxy", traceID) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		req = recv.find("credbroker.proxy", traceID)[0]
		Expect(fmt.Sprintf("%x", req.ParentSpanId)).To(Equal(parent), "a child of the app's span")
		Expect(req.Kind).To(Equal(tracepb.Span_SPAN_KIND_SERVER))
		Expect(spanAttrs(req)).To(Equal(map[string]string{
			"credbroker.route": "orders", "http.request.method": "GET", "credbroker.auth": "bearer",
			"server.address": upHost, "http.response.status_code": "200",
		}))
		Expect(up.Header.Get("Traceparent")).To(Equal(fmt.Sprintf("00-%s-%x-01", traceID, req.SpanId)), "the upstream is a child of the request's span")
		Expect(up.Header.Get("Tracestate")).To(Equal("e2e=1"))

		Eventually(func() []*tracepb.Span { return recv.find("credbroker.token.fetch", traceID) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		fetch := recv.find("credbroker.token.fetch", traceID)[0]
		Expect(fetch.ParentSpanId).To(Equal(req.SpanId), "the token fetch is a child of the request that needed it")
		Expect(fetch.Kind).To(Equal(tracepb.Span_SPAN_KIND_CLIENT))
		Expect(spanAttrs(fetch)).To(HaveKeyWithValue("credbroker.token.fetch_reason", "miss"))
		Expect(spanAttrs(fetch)).To(HaveKeyWithValue("http.response.status_code", "200"))

		// A refused request: its span carries the reason, nothing reaches
		// the upstream.
		const refusedTrace = "6bf92f3577b34da6a3ce929d0e0e4736"
		resp, _ = call("GET", r.Proxy+"/nowhere/x?sig="+querySecret, nil, map[string]string{"traceparent": "00-" + refusedTrace + "-" + parent + "-01"})
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		Eventually(func() []*tracepb.Span { return recv.find("credbroker.proxy", refusedTrace) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		refused := recv.find("credbroker.proxy", refusedTrace)[0]
		Expect(spanAttrs(refused)).To(HaveKeyWithValue("credbroker.refusal_reason", "not-a-route"))
		Expect(spanAttrs(refused)).To(HaveKeyWithValue("http.response.status_code", "403"))
		Expect(recv.find("credbroker.token.fetch", refusedTrace)).To(BeEmpty())

		// A request whose caller did not sample its trace: nothing is
		// recorded (parentbased_always_on), the trace goes on upstream.
		const unsampledTrace = "9bf92f3577b34da6a3ce929d0e0e4736"
		resp, _ = call("GET", r.Proxy+"/orders/unsampled", nil, map[string]string{
			"X-Tenant": info.Tenants[1].Subdomain, "traceparent": "00-" + unsampledTrace + "-" + parent + "-00",
		})
		Expect(resp.StatusCode).To(Equal(200))
		sent := e.up.last("/orders/unsampled").Header.Get("Traceparent")
		Expect(sent).To(MatchRegexp("^00-" + unsampledTrace + "-[0-9a-f]{16}-00$"))
		Expect(sent).NotTo(ContainSubstring(parent))

		// Pairing at start made a span too; every export names the service.
		Expect(recv.find("credbroker.connector.pair", "")).NotTo(BeEmpty())
		recv.mu.Lock()
		Expect(recv.res).To(HaveEach("e2e-credbroker"))
		recv.mu.Unlock()

		Consistently(func() []*tracepb.Span { return recv.find("credbroker.proxy", unsampledTrace) }).WithTimeout(time.Second).Should(BeEmpty(), "an unsampled request is not exported (spans go out every 100 ms)")
		e.secrets.ExpectNotIn(recv.bodies()...)
	})
})
