package sidecar

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/sidecar/guard"
)

// The access log (access_log:) writes one line per request of the egress
// proxy — fast path and net/http path alike — and of the inbound guard
// (serveInboundLogged), separate from the diagnostic log. A line holds the fields of accessEntry and nothing else: no header
// value ever (the trace id is parsed out of traceparent and checked to be
// hex), no query string, no body. Lines are formatted on the request's
// goroutine into pooled buffers and handed to one writer goroutine over a
// bounded queue; when the queue is full (a slow disk, a blocked stdout) the
// line is dropped and counted (credbroker_access_log_dropped_total): the
// data path never waits for the log. With the access log off the proxy
// pays one nil check per request.

// AccessLog configures the access log (docs/observability.md).
type AccessLog struct {
	// Enabled turns the access log on (off by default).
	Enabled bool `yaml:"enabled"`
	// Format is json (default) or text (logfmt: key=value).
	Format string `yaml:"format"`
	// Path is the file lines are appended to (created 0600); "" or "-" is
	// standard output. A reload reopens it (for log rotation).
	Path string `yaml:"path"`
	// Sample is the share of successful requests logged, 0 to 1 (default
	// 1: every request). Requests with a status of 400 or more, and every
	// answer with a refusal reason, are always logged.
	Sample *float64 `yaml:"sample"`
	// Buffer is how many lines wait for the writer before new ones are
	// dropped and counted (default 4096).
	Buffer int `yaml:"buffer"`
}

// Access log formats and defaults.
const (
	AccessLogJSON          = "json"
	AccessLogText          = "text"
	DefaultAccessLogBuffer = 4096
	// MaxAccessLogBuffer bounds access_log.buffer (lines of at most a few
	// KiB each).
	MaxAccessLogBuffer = 1 << 20
	// accessPathMax bounds the path written to one line; a longer path is
	// cut and ends with "…".
	accessPathMax = 2048
	// accessMethodMax bounds the method written to one line: net/http
	// takes any token up to the head's 1 MiB, and a line must stay small
	// (the queue holds up to access_log.buffer of them).
	accessMethodMax = 32
)

// checkAccessLog validates access_log.
func (c *Config) checkAccessLog(errs ConfigErrors) ConfigErrors {
	a := c.AccessLog
	switch a.Format {
	case "", AccessLogJSON, AccessLogText:
	default:
		errs = append(errs, c.errorf("access_log.format", "", ErrInvalidValue, "%q: want json or text", a.Format))
	}
	if s := a.Sample; s != nil && !(*s >= 0 && *s <= 1) {
		errs = append(errs, c.errorf("access_log.sample", "", ErrInvalidValue, "want a number from 0 to 1"))
	}
	if a.Buffer < 0 || a.Buffer > MaxAccessLogBuffer {
		errs = append(errs, c.errorf("access_log.buffer", "", ErrInvalidValue, "want 0 (the default, %d) to %d lines", DefaultAccessLogBuffer, MaxAccessLogBuffer))
	}
	return errs
}

// OverrideAccessLog lays the run flags over access_log: a non-empty path
// turns the log on and names its file ("-": standard output), a non-empty
// format or a non-nil sample replaces the file's. It re-checks the result.
func (c *Config) OverrideAccessLog(path, format string, sample *float64) error {
	if path != "" {
		c.AccessLog.Enabled, c.AccessLog.Path = true, path
		delete(c.lines, "access_log.path")
	}
	if format != "" {
		c.AccessLog.Format = format
		delete(c.lines, "access_log.format")
	}
	if sample != nil {
		c.AccessLog.Sample = sample
		delete(c.lines, "access_log.sample")
	}
	if errs := c.checkAccessLog(nil); len(errs) > 0 {
		return errs
	}
	return nil
}

// accessLog is an open access log. record is safe for concurrent use;
// close stops the writer after it wrote what is queued.
type accessLog struct {
	text      bool
	all       bool   // sample 1: no coin to toss
	threshold uint64 // log a success when rand.Uint64() < threshold
	queue     chan *[]byte
	done      chan struct{}
	finished  chan struct{}
	closeOnce sync.Once
	out       io.Writer
	file      *os.File // nil for standard output
	m         *Metrics
	log       *slog.Logger
	bufs      sync.Pool
}

// openAccessLog opens the access log of cfg (nil when it is off).
func openAccessLog(cfg AccessLog, stdout io.Writer, m *Metrics, log *slog.Logger) (*accessLog, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &accessLog{
		text:     cfg.Format == AccessLogText,
		all:      true,
		done:     make(chan struct{}),
		finished: make(chan struct{}),
		out:      stdout,
		m:        m,
		log:      log,
	}
	if s := cfg.Sample; s != nil && *s < 1 {
		a.all = false
		a.threshold = uint64(*s * math.MaxUint64)
		if *s > 0 && a.threshold == 0 {
			a.threshold = 1
		}
	}
	n := cfg.Buffer
	if n == 0 {
		n = DefaultAccessLogBuffer
	}
	a.queue = make(chan *[]byte, n)
	a.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	if cfg.Path != "" && cfg.Path != "-" {
		f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		a.file, a.out = f, f
	}
	go a.run()
	return a, nil
}

// run writes queued lines until close, batching what is queued into one
// write. A failed write drops its lines (counted) and is said in the
// diagnostic log at most once a minute.
func (a *accessLog) run() {
	defer close(a.finished)
	batch := make([]byte, 0, 64<<10)
	lines := 0
	var lastErr time.Time
	flush := func() {
		if lines == 0 {
			return
		}
		if _, err := a.out.Write(batch); err != nil {
			a.m.accessDropped.Add(float64(lines))
			if time.Since(lastErr) > time.Minute {
				lastErr = time.Now()
				a.log.Warn("access log: writing failed; its lines are dropped (credbroker_access_log_dropped_total)", "err", err)
			}
		}
		batch, lines = batch[:0], 0
	}
	add := func(b *[]byte) {
		batch = append(batch, *b...)
		lines++
		a.put(b)
		if len(batch) >= 64<<10 {
			flush()
		}
	}
	for {
		select {
		case b := <-a.queue:
			add(b)
			for more := true; more; {
				select {
				case b := <-a.queue:
					add(b)
				default:
					more = false
				}
			}
			flush()
			if cap(batch) > 1<<20 {
				batch = make([]byte, 0, 64<<10)
			}
		case <-a.done:
			for {
				select {
				case b := <-a.queue:
					add(b)
				default:
					flush()
					if a.file != nil {
						_ = a.file.Close()
					}
					return
				}
			}
		}
	}
}

// close stops the writer once the queue is written (lines recorded after
// close are dropped). It waits for the writer.
func (a *accessLog) close() {
	if a == nil {
		return
	}
	a.closeOnce.Do(func() { close(a.done) })
	<-a.finished
}

func (a *accessLog) put(b *[]byte) {
	if cap(*b) > 16<<10 {
		return
	}
	*b = (*b)[:0]
	a.bufs.Put(b)
}

// wants reports whether a request with this status and reason is logged:
// always when it failed or was refused, else by the sample.
func (a *accessLog) wants(status int, reason string) bool {
	if a.all || status >= 400 || reason != "" {
		return true
	}
	return a.threshold != 0 && rand.Uint64() < a.threshold
}

// accessEntry is one line of the access log. Every string field is a
// constant of this package, a configured name, a method (a token), the
// request path or hex.
type accessEntry struct {
	start    time.Time
	listener string
	route    string
	auth     string
	method   string
	path     string // escaped, without query
	status   int
	dur      time.Duration
	upstream time.Duration // 0: no upstream call
	in, out  int64         // body bytes read from the client / written to it
	reason   string
	trace    [32]byte // lower-case hex; trace[0] == 0: none
}

// record formats e and queues it, or drops it when the queue is full. The
// caller checked wants.
func (a *accessLog) record(e *accessEntry) {
	select {
	case <-a.done:
		return
	default:
	}
	b := a.bufs.Get().(*[]byte)
	if a.text {
		*b = e.appendText((*b)[:0])
	} else {
		*b = e.appendJSON((*b)[:0])
	}
	select {
	case a.queue <- b:
	default:
		a.m.accessDropped.Inc()
		a.put(b)
	}
}

func (e *accessEntry) traceID() string {
	if e.trace[0] == 0 {
		return ""
	}
	return b2s(e.trace[:])
}

// appendJSON appends e as one JSON object and a newline. Every field is
// present; route, auth, reason and trace_id are "" when there is none,
// upstream_ms is 0 when no upstream call was made.
func (e *accessEntry) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","listener":`...)
	b = appendJSONString(b, e.listener)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, e.route)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.dur)
	b = append(b, `,"upstream_ms":`...)
	b = appendMillis(b, e.upstream)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.in, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.out, 10)
	b = append(b, `,"auth":`...)
	b = appendJSONString(b, e.auth)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, e.reason)
	b = append(b, `,"trace_id":`...)
	b = appendJSONString(b, e.traceID())
	return append(b, "}\n"...)
}

// appendText appends e as one logfmt line: key=value, values quoted when
// they are empty or hold a space, a quote, '=' or anything but printable
// ASCII.
func (e *accessEntry) appendText(b []byte) []byte {
	b = append(b, "time="...)
	b = e.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = appendTextField(b, " listener=", e.listener)
	b = appendTextField(b, " route=", e.route)
	b = appendTextField(b, " method=", e.method)
	b = appendTextField(b, " path=", e.path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, " duration_ms="...)
	b = appendMillis(b, e.dur)
	b = append(b, " upstream_ms="...)
	b = appendMillis(b, e.upstream)
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, e.in, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, e.out, 10)
	b = appendTextField(b, " auth=", e.auth)
	b = appendTextField(b, " reason=", e.reason)
	b = appendTextField(b, " trace_id=", e.traceID())
	return append(b, '\n')
}

func appendMillis(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	return strconv.AppendFloat(b, float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

func appendTextField(b []byte, key, v string) []byte {
	b = append(b, key...)
	plain := v != ""
	for i := 0; i < len(v) && plain; i++ {
		c := v[i]
		plain = c > ' ' && c < 0x7f && c != '"' && c != '=' && c != '\\'
	}
	if plain {
		return append(b, v...)
	}
	return appendJSONString(b, v)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, control characters and <, >, & are escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// accessMethod bounds a method for the log (a method is a token: ASCII,
// cut anywhere), ending a cut one with "…".
func accessMethod(m string) string {
	if len(m) <= accessMethodMax {
		return m
	}
	return m[:accessMethodMax] + "…"
}

// accessPath bounds a path for the log and redacts its path parameters:
// what follows a ';' in a segment (";jsessionid=…", a matrix parameter)
// is often a session id or a key, so each segment's parameters are
// written as ";redacted", as a query string is left out.
func accessPath(p string) string {
	cut := ""
	if len(p) > accessPathMax {
		n := accessPathMax
		for n > 0 && !utf8.RuneStart(p[n]) {
			n--
		}
		p, cut = p[:n], "…"
	}
	if strings.IndexByte(p, ';') < 0 {
		return p + cut
	}
	b := make([]byte, 0, len(p)+len(cut))
	for p != "" {
		i := strings.IndexByte(p, ';')
		if i < 0 {
			b = append(b, p...)
			break
		}
		b = append(b, p[:i]...)
		b = append(b, ";redacted"...)
		p = p[i:]
		if j := strings.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = ""
		}
	}
	return string(append(b, cut...))
}

// traceparentID is the trace id of a valid traceparent value, in
// lower-case hex (parseTraceparent).
func traceparentID(v []byte) (id [32]byte, ok bool) {
	sc, _, ok := parseTraceparent(v)
	if !ok {
		return id, false
	}
	tid := sc.TraceID()
	hex.Encode(id[:], tid[:])
	return id, true
}

// traceIDFromContext is the trace id of the span tracing put in the
// request's context (trace.SpanContextFromContext), sampled or not.
func traceIDFromContext(ctx context.Context) (id [32]byte, ok bool) {
	tid := trace.SpanContextFromContext(ctx).TraceID()
	if !tid.IsValid() {
		return id, false
	}
	hex.Encode(id[:], tid[:])
	return id, true
}

// requestTraceID is the trace id of a request for the access log: the
// span in its context, else a valid single traceparent header.
func requestTraceID(ctx context.Context, h http.Header) [32]byte {
	if id, ok := traceIDFromContext(ctx); ok {
		return id
	}
	if v := h["Traceparent"]; len(v) == 1 {
		if id, ok := traceparentID([]byte(v[0])); ok {
			return id
		}
	}
	return [32]byte{}
}

// accessRW is the ResponseWriter of a logged net/http request: it keeps
// the status, the body bytes written and, set by the handlers through the
// note* hooks, the route, the refusal reason and the upstream timing.
type accessRW struct {
	http.ResponseWriter
	e       accessEntry
	in      atomic.Int64
	upStart time.Time
	wrote   bool
	dec     *guard.Decision // the inbound guard's decision (serveInboundLogged)
}

func (a *accessRW) WriteHeader(code int) {
	if !a.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		a.wrote = true
		a.e.status = code
		if a.e.reason == "" {
			// A reason set on an upstream's answer (reauth.go): the
			// upstream's own X-Credbroker-* fields are gone by now
			// (ownheaders.go).
			a.e.reason = a.Header().Get(HeaderError)
		}
		if !a.upStart.IsZero() {
			a.e.upstream = time.Since(a.upStart)
		} else if a.dec != nil && !a.dec.AppStart.IsZero() {
			a.e.upstream = time.Since(a.dec.AppStart)
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *accessRW) Write(p []byte) (int, error) {
	if !a.wrote {
		a.WriteHeader(http.StatusOK)
	}
	n, err := a.ResponseWriter.Write(p)
	a.e.out += int64(n)
	return n, err
}

// Flush passes a flush on (ReverseProxy streams through it).
func (a *accessRW) Flush() {
	if !a.wrote {
		a.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(a.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer
// (full duplex, hijacking for upgrades, deadlines).
func (a *accessRW) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// accessNoteRoute, accessNoteReason and noteUpstream are the access log's
// hooks in the handlers (noteRoute and noteReason, tracing.go, call the
// first two past a traced request's writer): a type check, nothing more,
// when the log is off.
func accessNoteRoute(w http.ResponseWriter, r *route) {
	if a, ok := w.(*accessRW); ok {
		a.e.route, a.e.auth = r.name, r.cfg.Auth.Type
	}
}

func accessNoteReason(w http.ResponseWriter, reason string) {
	if a, ok := w.(*accessRW); ok {
		a.e.reason = reason
	}
}

func noteUpstream(w http.ResponseWriter) {
	if tw, ok := w.(*tracedWriter); ok {
		w = tw.ResponseWriter
	}
	if a, ok := w.(*accessRW); ok {
		a.upStart = time.Now()
	}
}

// setAccessTraceID sets the trace id the access log records for the
// request w belongs to: the span's (serveTraced), which for a request
// without a traceparent is a new trace. An invalid id is ignored.
func setAccessTraceID(w http.ResponseWriter, tid trace.TraceID) {
	a, ok := w.(*accessRW)
	if !ok || !tid.IsValid() {
		return
	}
	hex.Encode(a.e.trace[:], tid[:])
}

// countBody counts the request body bytes read (atomically: the
// transport may still be sending the body when the handler returns).
type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// serveLogged serves one net/http request of the proxy listener and writes
// its access log line.
func (p *Proxy) serveLogged(w http.ResponseWriter, req *http.Request) {
	a := &accessRW{ResponseWriter: w}
	a.e.start = time.Now()
	a.e.listener = "proxy"
	a.e.method = accessMethod(req.Method)
	a.e.path = accessPath(req.URL.EscapedPath())
	a.e.trace = requestTraceID(req.Context(), req.Header)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = countBody{req.Body, &a.in}
	}
	defer func() {
		a.e.dur = time.Since(a.e.start)
		a.e.in = a.in.Load()
		if a.e.status == 0 {
			a.e.status = http.StatusOK
			if req.Context().Err() != nil {
				a.e.status = 499 // the app went away (as the metrics count it)
			}
		}
		if p.access.wants(a.e.status, a.e.reason) {
			p.access.record(&a.e)
		}
	}()
	p.ServeHTTP(a, req)
}

// serveInboundLogged serves one request of the inbound listener with in
// (the guard of the same generation) and writes its access log line:
// listener "inbound", route the matching rule's path, auth the method that
// decided, reason the guard's own refusal reason — all taken from the
// guard's Decision, never from the response (the app behind the guard can
// set any header) — and no identity of the caller. upstream_ms is the
// app's time to its response head.
func (a *accessLog) serveInboundLogged(in InboundHandler, w http.ResponseWriter, req *http.Request) {
	rw := &accessRW{ResponseWriter: w, dec: &guard.Decision{}}
	rw.e.start = time.Now()
	rw.e.listener = "inbound"
	rw.e.method = accessMethod(req.Method)
	rw.e.path = accessPath(req.URL.EscapedPath())
	rw.e.trace = requestTraceID(req.Context(), req.Header)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = countBody{req.Body, &rw.in}
	}
	defer func() {
		d := rw.dec
		rw.e.dur = time.Since(rw.e.start)
		rw.e.in = rw.in.Load()
		rw.e.route, rw.e.auth, rw.e.reason = d.Rule, string(d.Method), d.Reason
		if d.TraceID.IsValid() {
			hex.Encode(rw.e.trace[:], d.TraceID[:])
		}
		if rw.e.status == 0 {
			rw.e.status = http.StatusOK
			if req.Context().Err() != nil {
				rw.e.status = 499 // the caller went away
			}
		}
		if a.wants(rw.e.status, rw.e.reason) {
			a.record(&rw.e)
		}
	}()
	in.ServeHTTP(rw, req.WithContext(guard.RecordDecision(req.Context(), rw.dec)))
}

// logFast writes the access log line of a request the fast path served.
func (a *accessLog) logFast(fc *fastConn, r *route, status int, start time.Time, d time.Duration) {
	acc := &fc.acc
	if !a.wants(status, acc.reason) {
		return
	}
	q := &fc.req
	e := accessEntry{
		start: start, listener: "proxy", route: r.name, auth: r.cfg.Auth.Type,
		method: accessMethod(b2s(q.method)), path: accessPath(b2s(q.path)), status: status, dur: d,
		upstream: acc.upDur, out: acc.nOut, reason: acc.reason,
	}
	if t := fc.traceLine; len(t) > 0 {
		// Tracing on, the sampler dropped it: the trace id sent upstream.
		e.trace, _ = traceparentID(t[len("traceparent: ") : len(t)-2])
	} else {
		n := 0
		var v []byte
		for i := range q.n {
			if f := &q.hdr[i]; len(f.name) == 11 && equalFold(f.name, "traceparent") {
				n++
				v = f.val
			}
		}
		if n == 1 {
			e.trace, _ = traceparentID(v)
		}
	}
	a.record(&e)
}

// fastAccess is what the fast path measures for the access log; only
// while on is true (the log is open) does it read the clock.
type fastAccess struct {
	on      bool
	upStart time.Time
	upDur   time.Duration
	nOut    int64
	reason  string
}
