package tracing

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The OTLP transport. The official exporters (otlptracehttp, otlptracegrpc)
// link google.golang.org/grpc and grpc-gateway whichever protocol is used
// (their shared config and the collector's generated package import both):
// about 110 packages whose init functions and code pages cost credbroker
// run 3.5 MiB of resident memory with tracing off (issue 16). otlpClient
// is an otlptrace.Client — the official exporter core turns the SDK's
// spans into OTLP messages — that sends them itself: OTLP/HTTP with
// net/http, OTLP/gRPC as one unary call over net/http's HTTP/2 (h2c for
// plain http://). It reads the same OTEL_EXPORTER_OTLP_* variables with
// the official exporters' rules.

const (
	otlpGRPCPath        = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	otlpDefaultTimeout  = 10 * time.Second
	otlpMaxResponseSize = 64 << 10
	otlpEnvPrefix       = "OTEL_EXPORTER_OTLP_"
	otlpEnvTracesPrefix = "OTEL_EXPORTER_OTLP_TRACES_"

	// Retries of a failed export: the official exporters' defaults.
	retryInitial    = 5 * time.Second
	retryMax        = 30 * time.Second
	retryMaxElapsed = time.Minute
)

// otlpClient sends ExportTraceServiceRequests over OTLP/HTTP or OTLP/gRPC.
type otlpClient struct {
	grpc    bool
	url     string // the full request URL
	headers http.Header
	gzip    bool
	timeout time.Duration // per attempt
	backoff time.Duration // the first retry's delay (retryInitial)
	client  *http.Client
}

// otlpEnv reads the exporter's variables: the TRACES_ spelling wins.
type otlpEnv struct {
	lookup func(string) (string, bool)
	log    *slog.Logger
}

// get returns the value of OTEL_EXPORTER_OTLP_TRACES_<name> or else
// OTEL_EXPORTER_OTLP_<name>, and the variable's name.
func (e otlpEnv) get(name string) (value, variable string) {
	for _, p := range []string{otlpEnvTracesPrefix, otlpEnvPrefix} {
		if v, ok := e.lookup(p + name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v), p + name
		}
	}
	return "", ""
}

// newOTLPClient builds the transport of s (resolved settings, protocol
// proto) with the variables of lookup.
func newOTLPClient(s Settings, proto string, lookup func(string) (string, bool), log *slog.Logger) (*otlpClient, error) {
	env := otlpEnv{lookup: lookup, log: log}
	c := &otlpClient{grpc: proto == ProtocolGRPC, timeout: otlpDefaultTimeout, backoff: retryInitial}

	// The endpoint: the config file's endpoint is a base URL and its scheme
	// decides TLS; a variable's as the official exporters read it, and
	// OTEL_EXPORTER_OTLP_(TRACES_)INSECURE may then turn TLS off or on.
	var u *url.URL
	envRules := true
	if s.Endpoint != "" {
		var err error
		if u, err = url.Parse(s.Endpoint); err != nil {
			return nil, errors.New("tracing: bad OTLP endpoint") // checked before
		}
		u = &url.URL{Scheme: strings.ToLower(u.Scheme), Host: u.Host, Path: u.Path}
		if !c.grpc && !(s.endpointFromEnv && s.endpointTraces) {
			u.Path = strings.TrimSuffix(u.Path, "/") + otlpHTTPTracesPath
		}
		if u.Path == "" {
			u.Path = "/"
		}
		envRules = s.endpointFromEnv
	} else {
		u = &url.URL{Scheme: "https", Host: "localhost:4318", Path: otlpHTTPTracesPath}
		if c.grpc {
			u.Host = "localhost:4317"
		}
	}
	insecure := u.Scheme == "http"
	if envRules {
		for _, name := range []string{otlpEnvPrefix + "INSECURE", otlpEnvTracesPrefix + "INSECURE"} {
			if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					log.Warn("tracing: ignoring a variable: want true or false", "variable", name)
					continue
				}
				insecure = b
			}
		}
	}
	u.Scheme = "https"
	if insecure {
		u.Scheme = "http"
	}
	if c.grpc {
		u.Path = otlpGRPCPath
	}
	c.url = u.String()

	c.headers = env.headers()
	if v, name := env.get("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			log.Warn("tracing: ignoring a variable: want milliseconds", "variable", name)
		} else {
			c.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if v, _ := env.get("COMPRESSION"); v == "gzip" {
		c.gzip = true
	}
	tlsConf := env.tlsConfig()

	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if c.grpc {
		// gRPC is HTTP/2 only: negotiated by ALPN over TLS, with prior
		// knowledge (h2c) in the clear. A proxy is reached with CONNECT
		// for either, as grpc-go does (it asks the environment about an
		// https:// URL of the target).
		p := new(http.Protocols)
		if insecure {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP2(true)
		}
		tr.Protocols = p
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			pu, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: addr}})
			if err != nil || pu == nil {
				return dialer.DialContext(ctx, network, addr)
			}
			return dialConnect(ctx, dialer, pu, addr)
		}
	}
	c.client = &http.Client{Transport: tr, Timeout: c.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// headers parses OTEL_EXPORTER_OTLP_(TRACES_)HEADERS: key=value pairs,
// comma-separated, values percent-encoded. A pair that is not one is
// skipped with a warning that names the variable, never the value (it
// may be an API key).
func (e otlpEnv) headers() http.Header {
	v, name := e.get("HEADERS")
	h := http.Header{}
	if v == "" {
		return h
	}
	for _, pair := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		dec, err := url.PathUnescape(val)
		dec = strings.TrimSpace(dec)
		if !ok || !validHeaderName(k) || err != nil || !validHeaderValue(dec) {
			e.log.Warn("tracing: ignoring a malformed header in a variable", "variable", name)
			continue
		}
		h.Set(k, dec)
	}
	return h
}

// tlsConfig is the exporter's TLS configuration from the CERTIFICATE,
// CLIENT_CERTIFICATE and CLIENT_KEY variables (nil: the system's roots,
// no client certificate). A file that cannot be used is skipped with a
// warning, as the official exporters do.
func (e otlpEnv) tlsConfig() *tls.Config {
	var conf *tls.Config
	if path, name := e.get("CERTIFICATE"); path != "" {
		pem, err := os.ReadFile(path)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			e.log.Warn("tracing: ignoring a variable: no PEM certificate in the file it names", "variable", name)
		} else {
			conf = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
	}
	certPath, certName := e.get("CLIENT_CERTIFICATE")
	keyPath, _ := e.get("CLIENT_KEY")
	if certPath != "" || keyPath != "" {
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			e.log.Warn("tracing: ignoring the client certificate: cannot load the certificate and key files", "variable", certName)
		} else {
			if conf == nil {
				conf = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	return conf
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// dialConnect opens a tunnel to addr through the HTTP proxy pu.
func dialConnect(ctx context.Context, d *net.Dialer, pu *url.URL, addr string) (net.Conn, error) {
	if pu.Scheme != "http" {
		return nil, fmt.Errorf("tracing: proxy scheme %q: only http:// proxies tunnel gRPC", pu.Scheme)
	}
	host := pu.Host
	if pu.Port() == "" {
		host = net.JoinHostPort(pu.Hostname(), "80")
	}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := pu.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	br := bufio.NewReader(conn)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("tracing: proxy refused the tunnel: %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Start does nothing: connections are made per export.
func (c *otlpClient) Start(context.Context) error { return nil }

// Stop closes idle connections.
func (c *otlpClient) Stop(context.Context) error {
	c.client.CloseIdleConnections()
	return nil
}

// exportRequest encodes an ExportTraceServiceRequest (field 1: repeated
// ResourceSpans).
func exportRequest(rss []*tracepb.ResourceSpans) ([]byte, error) {
	var b []byte
	for _, rs := range rss {
		m, err := proto.Marshal(rs)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b, nil
}

// UploadTraces sends one batch, retrying what the protocol calls
// retryable (HTTP 429, 502, 503, 504; gRPC UNAVAILABLE and the other
// transient codes) with exponential back-off for up to a minute, bounded
// by ctx.
func (c *otlpClient) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	msg, err := exportRequest(rss)
	if err != nil {
		return err
	}
	if c.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(msg)
		_ = zw.Close()
		msg = buf.Bytes()
	}
	body := msg
	if c.grpc {
		body = make([]byte, 5+len(msg))
		if c.gzip {
			body[0] = 1
		}
		binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
		copy(body[5:], msg)
	}
	start := time.Now()
	interval := c.backoff
	for {
		var retry bool
		var wait time.Duration
		if c.grpc {
			retry, err = c.sendGRPC(ctx, body)
		} else {
			retry, wait, err = c.sendHTTP(ctx, body)
		}
		if err == nil || !retry {
			return err
		}
		// Jitter as the official exporters' back-off: ±50 %.
		d := time.Duration(float64(interval) * (0.5 + rand.Float64()))
		if wait > d {
			d = wait
		}
		if time.Since(start)+d > retryMaxElapsed {
			return fmt.Errorf("max retry time would elapse: %w", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-t.C:
		}
		interval = min(time.Duration(float64(interval)*1.5), retryMax)
	}
}

func (c *otlpClient) newRequest(ctx context.Context, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range c.headers {
		req.Header[k] = v
	}
	return req, nil
}

// sendHTTP is one OTLP/HTTP attempt: whether a failure may be retried,
// and after how long the server asked (Retry-After).
func (c *otlpClient) sendHTTP(ctx context.Context, body []byte) (retry bool, wait time.Duration, err error) {
	req, err := c.newRequest(ctx, body)
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "credbroker OTLP over HTTP/protobuf exporter")
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		return errors.As(err, &ue) && ue.Temporary(), 0, err
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, otlpMaxResponseSize))
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		if rerr != nil || resp.Header.Get("Content-Type") != "application/x-protobuf" {
			return false, 0, nil
		}
		return false, 0, partialSuccess(data)
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return true, wait, fmt.Errorf("OTLP/HTTP receiver answered %s", resp.Status)
	default:
		return false, 0, fmt.Errorf("OTLP/HTTP receiver answered %s", resp.Status)
	}
}

// gRPC status codes the official exporter retries (RESOURCE_EXHAUSTED
// only with a RetryInfo, which this client does not read: not retried).
var grpcRetryable = map[int]bool{1: true, 4: true, 10: true, 11: true, 14: true, 15: true}

// sendGRPC is one OTLP/gRPC attempt: a unary call over HTTP/2.
func (c *otlpClient) sendGRPC(ctx context.Context, body []byte) (retry bool, err error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, body)
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "credbroker OTLP over gRPC exporter")
	if c.gzip {
		req.Header.Set("Grpc-Encoding", "gzip")
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10)+"m")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		// No answer: UNAVAILABLE (or DEADLINE_EXCEEDED), both retryable.
		return true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// HTTP status mapped to gRPC codes as grpc-go does: 429, 502, 503
		// and 504 are UNAVAILABLE.
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true, fmt.Errorf("OTLP/gRPC receiver answered HTTP %s", resp.Status)
		}
		return false, fmt.Errorf("OTLP/gRPC receiver answered HTTP %s", resp.Status)
	}
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, otlpMaxResponseSize))
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" { // a trailers-only answer carries it in the headers
		status = resp.Header.Get("Grpc-Status")
	}
	if rerr != nil {
		return true, rerr
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		return false, errors.New("OTLP/gRPC receiver answered without a grpc-status")
	}
	if code != 0 {
		return grpcRetryable[code], fmt.Errorf("OTLP/gRPC receiver answered grpc-status %d", code)
	}
	// The response message: one frame, uncompressed unless grpc-encoding says.
	if len(data) >= 5 && data[0] == 0 {
		if n := binary.BigEndian.Uint32(data[1:5]); int(n) <= len(data)-5 {
			return false, partialSuccess(data[5 : 5+n])
		}
	}
	return false, nil
}

// partialSuccess reads an ExportTraceServiceResponse: an error when the
// receiver rejected spans (field 1, ExportTracePartialSuccess: 1
// rejected_spans, 2 error_message).
func partialSuccess(b []byte) error {
	ps := fieldBytes(b, 1)
	if ps == nil {
		return nil
	}
	var rejected uint64
	var msg string
	for len(ps) > 0 {
		num, typ, n := protowire.ConsumeTag(ps)
		if n < 0 {
			return nil
		}
		ps = ps[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(ps)
			if m < 0 {
				return nil
			}
			rejected, ps = v, ps[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(ps)
			if m < 0 {
				return nil
			}
			msg, ps = string(v), ps[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, ps)
			if m < 0 {
				return nil
			}
			ps = ps[m:]
		}
	}
	if rejected == 0 && msg == "" {
		return nil
	}
	if len(msg) > 256 {
		msg = msg[:256]
	}
	return fmt.Errorf("OTLP partial success: %d spans rejected (%q)", int64(rejected), msg)
}

// fieldBytes returns the last length-delimited field num of message b.
func fieldBytes(b []byte, num protowire.Number) []byte {
	var out []byte
	for len(b) > 0 {
		n, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return nil
		}
		b = b[m:]
		if n == num && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return nil
			}
			out, b = v, b[k:]
			continue
		}
		k := protowire.ConsumeFieldValue(n, typ, b)
		if k < 0 {
			return nil
		}
		b = b[k:]
	}
	return out
}
