package sidecar

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/syncbuf"
)

func TestTraceparentID(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"00-" + id + "-00f067aa0ba902b7-01", true},
		{"00-" + id + "-00f067aa0ba902b7-00", true},
		{"01-" + id + "-00f067aa0ba902b7-01-what-the-future-holds", true}, // a later version may add fields
		{"01-" + id + "-00f067aa0ba902b7-01", true},
		{"00-" + id + "-00f067aa0ba902b7-01-extra", false}, // version 00 is exactly 55 characters
		{"01-" + id + "-00f067aa0ba902b7-01x", false},      // a later version's extra fields follow a '-'
		{"ff-" + id + "-00f067aa0ba902b7-01", false},       // version ff is invalid
		{"00-" + strings.ToUpper(id) + "-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-" + id + "-0000000000000000-01", false},
		{"00-" + id + "-00f067aa0ba902b7-0g", false},
		{"00-" + id[:31] + "-00f067aa0ba902b7-01", false},
		{"00_" + id + "-00f067aa0ba902b7-01", false},
		{" 00-" + id + "-00f067aa0ba902b7-01", false},
		{"00-" + id + "-00f067aa0ba902b7-01\r\nX: y", false},
		{"00-" + strings.Repeat("\"", 32) + "-00f067aa0ba902b7-01", false},
		{"", false},
	} {
		got, ok := traceparentID([]byte(tc.in))
		if ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if ok && string(got[:]) != id {
			t.Errorf("%q: trace id %q", tc.in, got[:])
		}
	}
}

func TestRequestTraceIDNeedsOneValidHeader(t *testing.T) {
	g := NewWithT(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	id := requestTraceID(context.Background(), http.Header{"Traceparent": {tp}})
	g.Expect(string(id[:])).To(Equal("4bf92f3577b34da6a3ce929d0e0e4736"))
	id = requestTraceID(context.Background(), http.Header{"Traceparent": {tp, tp}})
	g.Expect(id[0]).To(BeZero(), "two traceparent fields are invalid")
	id = requestTraceID(context.Background(), http.Header{})
	g.Expect(id[0]).To(BeZero())
}

func TestAccessEntryFormats(t *testing.T) {
	g := NewWithT(t)
	e := accessEntry{
		start:    time.Date(2026, 12, 5, 1, 2, 3, 456789000, time.UTC),
		listener: "proxy", route: "orders", auth: AuthBearer, method: "GET",
		// A hostile path: a quote, a newline, a line separator, bad UTF-8.
		path:   "/orders/a\"b\n{\"fake\":1}\u2028x\xff",
		status: 503, dur: 1500 * time.Microsecond, upstream: 250 * time.Microsecond,
		in: 3, out: 42, reason: ReasonTokenUnavailable,
	}
	copy(e.trace[:], "4bf92f3577b34da6a3ce929d0e0e4736")

	line := e.appendJSON(nil)
	g.Expect(bytes.Count(line, []byte("\n"))).To(Equal(1), "one line")
	g.Expect(line).To(HaveSuffix("\n"))
	var got map[string]any
	g.Expect(json.Unmarshal(line, &got)).To(Succeed(), string(line))
	g.Expect(got).To(Equal(map[string]any{
		"time": "2026-12-05T01:02:03.456789Z", "listener": "proxy", "route": "orders", "method": "GET",
		"path": "/orders/a\"b\n{\"fake\":1}\u2028x\ufffd", "status": 503.0, "duration_ms": 1.5, "upstream_ms": 0.25,
		"bytes_in": 3.0, "bytes_out": 42.0, "auth": "bearer", "reason": "token-unavailable",
		"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
	}))

	text := string(e.appendText(nil))
	g.Expect(strings.Count(text, "\n")).To(Equal(1), text)
	g.Expect(text).To(Equal(`time=2026-12-05T01:02:03.456789Z listener=proxy route=orders method=GET path="/orders/a\"b\n{\"fake\":1}\u2028x\ufffd" status=503 duration_ms=1.500 upstream_ms=0.250 bytes_in=3 bytes_out=42 auth=bearer reason=token-unavailable trace_id=4bf92f3577b34da6a3ce929d0e0e4736` + "\n"))

	// Empty fields: present, "" in JSON, quoted in text.
	e = accessEntry{start: e.start, listener: "proxy", method: "GET", path: "/x", status: 403, reason: ReasonNotARoute}
	g.Expect(json.Unmarshal(e.appendJSON(nil), &got)).To(Succeed())
	g.Expect(got).To(HaveKeyWithValue("route", ""))
	g.Expect(got).To(HaveKeyWithValue("trace_id", ""))
	g.Expect(string(e.appendText(nil))).To(ContainSubstring(` route="" `))
}

func TestAccessPathIsBounded(t *testing.T) {
	g := NewWithT(t)
	g.Expect(accessPath("/a")).To(Equal("/a"))
	long := "/" + strings.Repeat("é", accessPathMax)
	p := accessPath(long)
	g.Expect(len(p)).To(BeNumerically("<=", accessPathMax+len("…")))
	g.Expect(p).To(HaveSuffix("…"))
	g.Expect(strings.ToValidUTF8(p, "?")).To(Equal(p), "cut at a rune boundary")
}

func TestAccessPathRedactsPathParameters(t *testing.T) {
	for in, want := range map[string]string{
		"/orders/items":                 "/orders/items",
		"/orders/x;jsessionid=S3CR3T":   "/orders/x;redacted",
		"/orders/x;jsessionid=S3CR3T/y": "/orders/x;redacted/y",
		"/a;k=1;v=2/b;c/d":              "/a;redacted/b;redacted/d",
		"/;":                            "/;redacted",
		"/a%3Bb":                        "/a%3Bb", // an escaped ';' is data, not a parameter
		"/x;" + strings.Repeat("s", 2*accessPathMax): "/x;redacted…",
	} {
		if got := accessPath(in); got != want {
			t.Errorf("accessPath(%.40q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccessMethodIsBounded(t *testing.T) {
	g := NewWithT(t)
	g.Expect(accessMethod("PROPFIND")).To(Equal("PROPFIND"))
	g.Expect(accessMethod(strings.Repeat("M", accessMethodMax))).To(Equal(strings.Repeat("M", accessMethodMax)))
	g.Expect(accessMethod(strings.Repeat("M", 1<<20))).To(Equal(strings.Repeat("M", accessMethodMax) + "…"))
}

func TestAccessLogSampling(t *testing.T) {
	g := NewWithT(t)
	zero, half := 0.0, 0.5
	open := func(s *float64) *accessLog {
		a, err := openAccessLog(AccessLog{Enabled: true, Sample: s}, io.Discard, NewMetrics(), nil)
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(a.close)
		return a
	}
	none := open(&zero)
	g.Expect(none.wants(200, "")).To(BeFalse())
	g.Expect(none.wants(302, "")).To(BeFalse())
	g.Expect(none.wants(404, "")).To(BeTrue(), "errors are always logged")
	g.Expect(none.wants(502, ReasonUpstreamUnreachable)).To(BeTrue())
	g.Expect(none.wants(200, "x")).To(BeTrue(), "a reason is always logged")
	all := open(nil)
	g.Expect(all.wants(200, "")).To(BeTrue())
	some := open(&half)
	n := 0
	for range 10000 {
		if some.wants(200, "") {
			n++
		}
	}
	g.Expect(n).To(BeNumerically("~", 5000, 500))
	off, err := openAccessLog(AccessLog{}, io.Discard, NewMetrics(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(off).To(BeNil())
}

// blockingWriter blocks every Write until release is closed and says when
// the first Write started.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// A writer that does not keep up never blocks the caller: the queue fills,
// further lines are dropped and counted, and what was queued is written.
func TestAccessLogDropsWhenTheWriterIsStuck(t *testing.T) {
	g := NewWithT(t)
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	m := NewMetrics()
	a, err := openAccessLog(AccessLog{Enabled: true, Buffer: 4}, w, m, nil)
	g.Expect(err).NotTo(HaveOccurred())
	e := accessEntry{start: time.Now(), listener: "proxy", method: "GET", path: "/r/0", status: 200}
	a.record(&e)
	<-w.started // the writer holds line 0 and waits
	for i := 1; i <= 10; i++ {
		e.path = fmt.Sprintf("/r/%d", i)
		a.record(&e) // returns at once: 4 are queued, 6 dropped
	}
	g.Expect(testutil.ToFloat64(m.accessDropped)).To(Equal(6.0))
	close(w.release)
	a.close()
	lines := strings.Split(strings.TrimSpace(w.buf.String()), "\n")
	g.Expect(lines).To(HaveLen(5))
	for i, l := range lines {
		g.Expect(l).To(ContainSubstring(fmt.Sprintf(`"path":"/r/%d"`, i)))
	}
	a.record(&e) // after close: dropped quietly, no panic
}

func TestAccessLogConfig(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct{ yaml, field string }{
		{"access_log: {enabled: true, format: xml}", "access_log.format"},
		{"access_log: {enabled: true, sample: 1.5}", "access_log.sample"},
		{"access_log: {enabled: true, sample: -0.1}", "access_log.sample"},
		{"access_log: {enabled: true, sample: .nan}", "access_log.sample"},
		{"access_log: {enabled: true, buffer: -1}", "access_log.buffer"},
	} {
		_, err := ParseConfig([]byte(tc.yaml), "t")
		g.Expect(err).To(HaveOccurred(), tc.yaml)
		g.Expect(err.Error()).To(ContainSubstring(tc.field), tc.yaml)
	}
	cfg, err := ParseConfig([]byte("access_log: {enabled: true, format: text, path: /tmp/x.log, sample: 0.25, buffer: 10}"), "t")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.AccessLog.Format).To(Equal("text"))
	g.Expect(*cfg.AccessLog.Sample).To(Equal(0.25))
	one := 1.0
	g.Expect(cfg.OverrideAccessLog("-", "json", &one)).To(Succeed())
	g.Expect(cfg.AccessLog).To(Equal(AccessLog{Enabled: true, Format: "json", Path: "-", Sample: &one, Buffer: 10}))
	g.Expect(cfg.OverrideAccessLog("", "yaml", nil)).To(MatchError(ContainSubstring("access_log.format")))
}

// syncBuffer collects access log lines written by one goroutine for a
// reading test.
type syncBuffer struct{ buf syncbuf.Buffer }

func (b *syncBuffer) Write(p []byte) (int, error) { return b.buf.Write(p) }

func (b *syncBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Both paths of the running server log: the fast path (a bodyless GET to a
// none or bearer route) and net/http's (a POST, a refusal), with the path
// without its query, the route and auth kind, the reason and the trace id.
func TestAccessLogThroughTheServer(t *testing.T) {
	g := NewWithT(t)
	up := plainUpstream(t)
	out := &syncBuffer{}
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\naccess_log: {enabled: true}\n"+
			"routes: [{name: open, upstream: '%s', auth: {type: none}}, {name: tok, upstream: '%s', auth: {type: bearer, binding: b}}]\n", up.URL, up.URL)), "t")
		return c, Deps{Tokens: staticTokens{}}, err
	}, WithMetrics(m), WithAccessLogOutput(out))
	addr := rs.s.Addr()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res := rawRoundTrip(t, addr, "GET /tok/items?secret=q1 HTTP/1.1\r\nHost: 127.0.0.1\r\nTraceparent: "+tp+"\r\nAuthorization: Bearer app-secret\r\n\r\n")
	g.Expect(res.Status).To(Equal(200))
	res = rawRoundTrip(t, addr, "POST /open/form?secret=q2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
	g.Expect(res.Status).To(Equal(200))
	res = rawRoundTrip(t, addr, "GET /nope/x?secret=q3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(res.Status).To(Equal(403))
	g.Eventually(func() int { return len(out.lines()) }, 10*time.Second, 10*time.Millisecond).Should(Equal(3))
	// A line is queued once its response is sent: the order of the lines
	// is not the order of the requests.
	ls := make([]map[string]any, 3)
	for _, l := range out.lines() {
		switch l["path"] {
		case "/tok/items":
			ls[0] = l
		case "/open/form":
			ls[1] = l
		case "/nope/x":
			ls[2] = l
		}
	}
	g.Expect(ls[0]).To(HaveKeyWithValue("route", "tok"))
	g.Expect(ls[0]).To(HaveKeyWithValue("auth", "bearer"))
	g.Expect(ls[0]).To(HaveKeyWithValue("path", "/tok/items"))
	g.Expect(ls[0]).To(HaveKeyWithValue("status", 200.0))
	g.Expect(ls[0]).To(HaveKeyWithValue("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"))
	g.Expect(ls[0]["bytes_out"]).To(BeNumerically(">", 0))
	g.Expect(ls[0]["upstream_ms"]).To(BeNumerically(">", 0))
	g.Expect(ls[1]).To(HaveKeyWithValue("route", "open"))
	g.Expect(ls[1]).To(HaveKeyWithValue("method", "POST"))
	g.Expect(ls[1]).To(HaveKeyWithValue("path", "/open/form"))
	g.Expect(ls[1]).To(HaveKeyWithValue("bytes_in", 5.0))
	g.Expect(ls[1]["upstream_ms"]).To(BeNumerically(">", 0))
	g.Expect(ls[2]).To(HaveKeyWithValue("route", ""))
	g.Expect(ls[2]).To(HaveKeyWithValue("reason", "not-a-route"))
	g.Expect(ls[2]).To(HaveKeyWithValue("status", 403.0))
	g.Expect(ls[2]).To(HaveKeyWithValue("upstream_ms", 0.0))
	all := out.buf.String()
	for _, s := range []string{"secret", "app-secret", "00f067aa0ba902b7"} {
		g.Expect(all).NotTo(ContainSubstring(s))
	}
	g.Expect(testutil.ToFloat64(m.fastPath.WithLabelValues("tok"))).To(Equal(1.0), "the GET took the fast path")
}

// The span's trace id goes into the line; an invalid one is ignored.
func TestSetAccessTraceID(t *testing.T) {
	g := NewWithT(t)
	a := &accessRW{ResponseWriter: &discardWriter{h: http.Header{}}}
	setAccessTraceID(a, trace.TraceID{})
	g.Expect(a.e.traceID()).To(BeEmpty())
	tid, err := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	g.Expect(err).NotTo(HaveOccurred())
	setAccessTraceID(a, tid)
	g.Expect(a.e.traceID()).To(Equal("4bf92f3577b34da6a3ce929d0e0e4736"))
	setAccessTraceID(&discardWriter{h: http.Header{}}, tid) // not logged: nothing happens
}

type plainInbound struct{ http.Handler }

func (plainInbound) TLSConfig() *tls.Config { return nil }

// The inbound listener's line bounds the method like the proxy's: net/http
// hands the guard any method token up to the head's limit.
func TestInboundAccessMethodIsBounded(t *testing.T) {
	g := NewWithT(t)
	out := &syncBuffer{}
	a, err := openAccessLog(AccessLog{Enabled: true}, out, NewMetrics(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	in := plainInbound{http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(403) })}
	req, err := http.NewRequest(strings.Repeat("M", 1<<16), "http://127.0.0.1/x", nil)
	g.Expect(err).NotTo(HaveOccurred())
	a.serveInboundLogged(in, &discardWriter{h: http.Header{}}, req)
	a.close()
	g.Eventually(func() int { return len(out.lines()) }, 10*time.Second, 10*time.Millisecond).Should(Equal(1))
	g.Expect(out.lines()[0]).To(HaveKeyWithValue("method", strings.Repeat("M", accessMethodMax)+"…"))
	g.Expect(out.lines()[0]).To(HaveKeyWithValue("listener", "inbound"))
}
