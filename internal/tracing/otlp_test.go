package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // the receiver reads gzip-compressed messages, as the collector does
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/testpki"
)

func batch(name string) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
		Name: name, TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8),
	}}}}}}
}

func spanNames(req *coltracepb.ExportTraceServiceRequest) []string {
	var out []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, s.Name)
			}
		}
	}
	return out
}

func TestOTLPClientURL(t *testing.T) {
	file := func(endpoint string) Settings { return Settings{Exporter: ExporterOTLP, Endpoint: endpoint} }
	fromEnv := func(m map[string]string) Settings {
		s, err := FromEnv(env(m))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		s     Settings
		proto string
		env   map[string]string
		want  string
	}{
		{"config endpoint: the traces path is appended", file("http://file:4318/base/"), ProtocolHTTP, nil, "http://file:4318/base/v1/traces"},
		{"base endpoint variable", fromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://env:4318"}), ProtocolHTTP, nil, "https://env:4318/v1/traces"},
		{"traces endpoint variable: used as it is", fromEnv(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env:4318/custom"}), ProtocolHTTP, nil, "http://env:4318/custom"},
		{"traces endpoint variable without a path: /", fromEnv(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env:4318"}), ProtocolHTTP, nil, "http://env:4318/"},
		{"gRPC: the service method, any path dropped", file("https://c:4317/ignored"), ProtocolGRPC, nil, "https://c:4317" + otlpGRPCPath},
		{"INSECURE turns TLS off for a variable's endpoint", fromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://env:4317"}), ProtocolGRPC,
			map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, "http://env:4317" + otlpGRPCPath},
		{"TRACES_INSECURE wins over INSECURE", fromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317"}), ProtocolGRPC,
			map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false"}, "https://env:4317" + otlpGRPCPath},
		{"the config file's scheme decides over INSECURE", file("https://file:4317"), ProtocolGRPC,
			map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, "https://file:4317" + otlpGRPCPath},
		{"no endpoint: localhost over TLS", Settings{Exporter: ExporterOTLP}, ProtocolGRPC, nil, "https://localhost:4317" + otlpGRPCPath},
		{"no endpoint, HTTP", Settings{Exporter: ExporterOTLP}, ProtocolHTTP, nil, "https://localhost:4318/v1/traces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := newOTLPClient(tc.s, tc.proto, env(tc.env), slog.New(slog.DiscardHandler))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.url).To(Equal(tc.want))
		})
	}
}

func TestOTLPHTTPExportHeadersGzipAndNoValueInLogs(t *testing.T) {
	g := NewWithT(t)
	type got struct {
		header http.Header
		body   []byte
	}
	reqs := make(chan got, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- got{r.Header.Clone(), b}
		// A partial success: one span rejected.
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "too old"}})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	defer srv.Close()
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := FromEnv(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}))
	g.Expect(err).NotTo(HaveOccurred())
	c, err := newOTLPClient(s, ProtocolHTTP, env(map[string]string{
		"OTEL_EXPORTER_OTLP_HEADERS":     "api-key=planted%20secret, x-team = blue ,no-equals-sign-secret,bad key=v",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
	}), log)
	g.Expect(err).NotTo(HaveOccurred())

	err = c.UploadTraces(context.Background(), batch("credbroker.proxy"))
	g.Expect(err).To(MatchError(ContainSubstring("1 spans rejected")), "a partial success is reported")
	r := <-reqs
	g.Expect(r.header.Get("Content-Type")).To(Equal("application/x-protobuf"))
	g.Expect(r.header.Get("Content-Encoding")).To(Equal("gzip"))
	g.Expect(r.header.Get("Api-Key")).To(Equal("planted secret"))
	g.Expect(r.header.Get("X-Team")).To(Equal("blue"))
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := io.ReadAll(zr)
	g.Expect(err).NotTo(HaveOccurred())
	var req coltracepb.ExportTraceServiceRequest
	g.Expect(proto.Unmarshal(raw, &req)).To(Succeed())
	g.Expect(spanNames(&req)).To(Equal([]string{"credbroker.proxy"}))

	g.Expect(logs.String()).To(ContainSubstring("OTEL_EXPORTER_OTLP_HEADERS"), "the malformed pairs are reported by variable")
	g.Expect(logs.String()).NotTo(Or(ContainSubstring("secret"), ContainSubstring("blue")), "never a value")
}

func TestOTLPHTTPRetriesWhatIsRetryable(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	answers := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK, http.StatusBadRequest}
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code := answers[n]
		n++
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	c, err := newOTLPClient(Settings{Exporter: ExporterOTLP, Endpoint: srv.URL}, ProtocolHTTP, env(nil), slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	c.backoff = time.Millisecond
	g.Expect(c.UploadTraces(context.Background(), batch("a"))).To(Succeed(), "503 and 429 are retried")
	g.Expect(n).To(Equal(3))
	g.Expect(c.UploadTraces(context.Background(), batch("b"))).To(MatchError(ContainSubstring("400")), "400 is not")
	g.Expect(n).To(Equal(4))
}

// traceService is an OTLP/gRPC receiver: the collector's TraceService
// served by grpc-go, answering the codes in fail first.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	fail  []codes.Code
	calls int
	names []string
	md    []metadata.MD
}

func (s *traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	md, _ := metadata.FromIncomingContext(ctx)
	s.md = append(s.md, md)
	if len(s.fail) > 0 {
		c := s.fail[0]
		s.fail = s.fail[1:]
		return nil, status.Error(c, "try again")
	}
	s.names = append(s.names, spanNames(req)...)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startGRPC(t *testing.T, svc *traceService, opts ...grpc.ServerOption) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	coltracepb.RegisterTraceServiceServer(s, svc)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func TestOTLPGRPCExportsToGRPCGo(t *testing.T) {
	for _, compression := range []string{"none", "gzip"} {
		t.Run(compression, func(t *testing.T) {
			g := NewWithT(t)
			svc := &traceService{fail: []codes.Code{codes.Unavailable}}
			addr := startGRPC(t, svc)
			s, err := FromEnv(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}))
			g.Expect(err).NotTo(HaveOccurred())
			c, err := newOTLPClient(s, s.Protocol, env(map[string]string{
				"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=k1",
				"OTEL_EXPORTER_OTLP_COMPRESSION":    compression,
			}), slog.New(slog.DiscardHandler))
			g.Expect(err).NotTo(HaveOccurred())
			c.backoff = time.Millisecond
			g.Expect(c.UploadTraces(context.Background(), batch("credbroker.token.fetch"))).To(Succeed(), "UNAVAILABLE is retried")
			svc.mu.Lock()
			defer svc.mu.Unlock()
			g.Expect(svc.calls).To(Equal(2))
			g.Expect(svc.names).To(Equal([]string{"credbroker.token.fetch"}))
			g.Expect(svc.md[1].Get("x-api-key")).To(Equal([]string{"k1"}))
		})
	}
}

func TestOTLPGRPCRefusalIsNotRetried(t *testing.T) {
	g := NewWithT(t)
	svc := &traceService{fail: []codes.Code{codes.InvalidArgument}}
	addr := startGRPC(t, svc)
	c, err := newOTLPClient(Settings{Exporter: ExporterOTLP, Endpoint: "http://" + addr}, ProtocolGRPC, env(nil), slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	c.backoff = time.Millisecond
	g.Expect(c.UploadTraces(context.Background(), batch("a"))).To(MatchError(ContainSubstring("grpc-status 3")))
	g.Expect(svc.calls).To(Equal(1))
}

func TestOTLPGRPCOverTLSWithTheCertificateVariables(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	clientCA := testpki.NewCA()
	srvConf := testpki.ServerTLSConfig(ca.Issue(testpki.WithIPs("127.0.0.1")), clientCA.Pool())
	svc := &traceService{}
	addr := startGRPC(t, svc, grpc.Creds(credentials.NewTLS(srvConf)))
	dir := t.TempDir()
	client := clientCA.Issue(testpki.ClientAuth())
	files := map[string][]byte{"ca.crt": ca.CertPEM(), "tls.crt": client.CertPEM(), "tls.key": client.KeyPEM(testpki.PKCS8)}
	for name, b := range files {
		g.Expect(os.WriteFile(filepath.Join(dir, name), b, 0o600)).To(Succeed())
	}
	vars := map[string]string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE":        filepath.Join(dir, "ca.crt"),
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": filepath.Join(dir, "tls.crt"),
		"OTEL_EXPORTER_OTLP_CLIENT_KEY":         filepath.Join(dir, "tls.key"),
	}
	c, err := newOTLPClient(Settings{Exporter: ExporterOTLP, Endpoint: "https://" + addr}, ProtocolGRPC, env(vars), slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.UploadTraces(context.Background(), batch("tls"))).To(Succeed())
	g.Expect(svc.names).To(Equal([]string{"tls"}))

	// Without the CA variable the receiver's certificate is not trusted.
	delete(vars, "OTEL_EXPORTER_OTLP_CERTIFICATE")
	c, err = newOTLPClient(Settings{Exporter: ExporterOTLP, Endpoint: "https://" + addr}, ProtocolGRPC, env(vars), slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	c.backoff = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	g.Expect(c.UploadTraces(ctx, batch("untrusted"))).To(MatchError(ContainSubstring("certificate")))
}

func TestOTLPHTTPDoesNotFollowARedirect(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	var reached []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Header.Get("Api-Key"))
		mu.Unlock()
	}))
	defer other.Close()
	srv := httptest.NewServer(http.RedirectHandler(other.URL+"/v1/traces", http.StatusTemporaryRedirect))
	defer srv.Close()
	c, err := newOTLPClient(Settings{Exporter: ExporterOTLP, Endpoint: srv.URL}, ProtocolHTTP,
		env(map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=k"}), slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.UploadTraces(context.Background(), batch("a"))).To(MatchError(ContainSubstring("307")))
	mu.Lock()
	defer mu.Unlock()
	g.Expect(reached).To(BeEmpty(), "the headers never reach the redirect's target")
}
