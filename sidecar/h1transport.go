package sidecar

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// h1Transport is the round tripper of the routes that share a client
// certificate. The common request (no body, replayable, no upgrade, no
// Expect) to an HTTP/1.1 upstream is sent in line: the calling goroutine
// writes it on a pooled connection and reads the response itself, which
// saves the two goroutine hand-offs per request of http.Transport (its
// writeLoop and readLoop). Everything else goes to the std transport:
// requests with a body, upgrades, Expect: 100-continue, non-replayable
// methods, and https:// upstreams until one has answered in HTTP/1.1 (an
// upstream that picks HTTP/2 stays on the std transport).
//
// Since the fast path (fastpath.go) serves the common bodyless request
// without net/http at all, the in-line round trip here carries the
// bodyless requests that stay on the net/http path (oauth1, jwt-bearer and
// tenant_header routes, heads outside the fast subset); measured on that
// path it still saves a fifth of the allocations (64 instead of 84 per
// request) and about 15 % of the CPU over http.Transport. Its per-host
// pools (h1Host: idle connections, liveness probe, TLS with http/1.1 only,
// HTTP/1.1 learning) are the fast path's upstream connections too.
//
// Safe for concurrent use.
type h1Transport struct {
	// std serves what the in-line path does not (HTTP/2, bodies,
	// upgrades); retire swaps in a fresh copy.
	std              atomic.Pointer[http.Transport]
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig        *tls.Config // the std transport's; cloned per host with NextProtos http/1.1
	handshakeTimeout time.Duration
	headerTimeout    time.Duration
	idleTimeout      time.Duration
	maxIdle          int
	// clientCheck is how often the fast loop, waiting for a response,
	// looks whether its client has gone (clientCheckInterval).
	clientCheck time.Duration

	// gen counts CloseIdleConnections calls: a connection dialled before
	// the last call is closed instead of pooled (a rotated client
	// certificate is presented on the next handshake).
	gen atomic.Uint64

	hostsMu sync.Mutex                          // serialises writers of hosts
	hosts   atomic.Pointer[map[hostKey]*h1Host] // copy on write
}

// Limits as in http.Transport.
const (
	maxResponseHeaderBytes = 10 << 20
	max1xxResponses        = 5
	// clientCheckInterval: while the fast loop waits for the first byte
	// of a response, it looks this often whether the client went away.
	clientCheckInterval = time.Second
)

type hostKey struct{ scheme, host string }

// h1Host is the connection pool of one upstream.
type h1Host struct {
	t    *h1Transport
	addr string      // host:port to dial
	tls  *tls.Config // nil for http://
	// h1 is true when requests may take the fast path: always for http://,
	// for https:// once the upstream answered the std transport in HTTP/1.1.
	h1 atomic.Bool

	mu   sync.Mutex
	idle []*h1Conn // most recently used last (so in order of idleAt)
	// sweep closes the connections idle for longer than the transport's
	// idleTimeout: one timer per host, armed while the pool is not empty,
	// so that pooling a connection arms no timer of its own (get checks
	// the age too, so a connection past it is never reused).
	sweep    *time.Timer
	sweeping bool
}

// sendState is the state of fastConn.send's wait, kept with the
// connection so that the wait's callback is made once per connection.
type sendState struct {
	step  func(fd uintptr) bool // pc.sendStep
	out   []byte                // the request
	probe bool                  // probe first (probeDue)
	sent  bool
	err   error
}

// h1Conn is one upstream connection. Only the goroutine that took it from
// the pool uses it, except for abort (context cancellation) and the idle
// timer, which only close it.
type h1Conn struct {
	host     *h1Host
	raw      net.Conn // the TCP connection
	conn     net.Conn // raw, or the TLS connection on it
	tlsState *tls.ConnectionState
	br       *bufio.Reader
	bw       *bufio.Writer
	gen      uint64
	reused   bool
	nread    int64      // bytes read since the request was written
	limit    int64      // bytes that may still be read (response headers)
	idleAt   time.Time  // when it was pooled
	probe    *connProbe // nil: no cheap liveness check on this platform
	// rc is the TCP socket, for the fast loop's send (fastConn.send);
	// probeDue: get left the idle probe of a plain connection to it.
	rc       syscall.RawConn
	probeDue bool
	probeBuf [1]byte
	send     sendState
	// readBy is the read deadline set on conn for the response head (zero:
	// none). It is left in place after the head and cleared by the first
	// read of the body from the socket (countingReader), so a response that
	// arrives in one read costs one deadline, not two; holdDeadline keeps
	// it for a read that is meant to time out (tlsQuiet).
	readBy       time.Time
	holdDeadline bool
}

func newH1Transport(std *http.Transport, dial func(ctx context.Context, network, addr string) (net.Conn, error), tc *tls.Config, cfg *Config) *h1Transport {
	t := &h1Transport{
		dial:             dial,
		tlsConfig:        tc,
		handshakeTimeout: cfg.Timeouts.TLSHandshake,
		headerTimeout:    cfg.Timeouts.ResponseHeader,
		idleTimeout:      cfg.Timeouts.IdleConn,
		maxIdle:          cfg.MaxIdleConnsPerHost,
		clientCheck:      clientCheckInterval,
	}
	if t.maxIdle <= 0 {
		t.maxIdle = http.DefaultMaxIdleConnsPerHost
	}
	t.std.Store(std)
	t.hosts.Store(&map[hostKey]*h1Host{})
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if h := t.fastHost(req); h != nil {
		resp, err := h.roundTrip(req)
		var he *handshakeError
		if !errors.As(err, &he) {
			return resp, err
		}
		// The upstream refused an HTTP/1.1-only handshake (it may have
		// become HTTP/2-only): the std transport tries, and learns again.
	}
	resp, err := t.std.Load().RoundTrip(req)
	if err == nil && resp.ProtoMajor == 1 && req.URL.Scheme == "https" {
		if h := t.host(req.URL.Scheme, req.URL.Host); h != nil {
			h.h1.Store(true)
		}
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of both paths;
// connections in use are closed when their response is done.
func (t *h1Transport) CloseIdleConnections() {
	t.gen.Add(1)
	for _, h := range *t.hosts.Load() {
		h.mu.Lock()
		idle := h.idle
		h.idle = nil
		h.mu.Unlock()
		for _, pc := range idle {
			pc.close()
		}
	}
	t.std.Load().CloseIdleConnections()
}

// retire makes every later request use a new connection, for a rotated
// client certificate: the in-line pools close connections of an older
// generation when they come back (CloseIdleConnections), and the std
// transport, whose HTTP/2 connections are shared by concurrent requests
// and so may never be idle while traffic flows, is replaced by a fresh
// copy. Requests in flight finish on the old one; its connections close
// once idle (the old transport's idle ones at once, the rest after the
// idle timeout).
func (t *h1Transport) retire() {
	old := t.std.Load()
	t.std.Store(old.Clone())
	t.CloseIdleConnections()
	old.CloseIdleConnections()
}

// fastHost returns the pool for req when req may take the fast path.
func (t *h1Transport) fastHost(req *http.Request) *h1Host {
	if !fastEligible(req) {
		return nil
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil
	}
	h := (*t.hosts.Load())[hostKey{u.Scheme, u.Host}]
	if h == nil {
		if u.Scheme != "http" {
			return nil // not known to speak HTTP/1.1 yet
		}
		h = t.host(u.Scheme, u.Host)
	}
	if h == nil || !h.h1.Load() {
		return nil
	}
	return h
}

// fastEligible reports whether req can be sent in line: no body, so the
// response cannot arrive while the request is still being written; no
// upgrade and no Expect, which need the std transport's handling; and
// replayable, so a pooled connection that the upstream closed meanwhile can
// be retried on a fresh one (the same rule as net/http).
func fastEligible(req *http.Request) bool {
	if req.ContentLength != 0 || (req.Body != nil && req.Body != http.NoBody) || len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return false
	}
	h := req.Header
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		_, k1 := h["Idempotency-Key"]
		_, k2 := h["X-Idempotency-Key"]
		if !k1 && !k2 {
			return false
		}
	}
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Connection"]; ok { // ReverseProxy leaves it only for upgrades
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	return true
}

// host returns the pool for scheme and host, creating it.
func (t *h1Transport) host(scheme, host string) *h1Host {
	key := hostKey{scheme, host}
	if h := (*t.hosts.Load())[key]; h != nil {
		return h
	}
	t.hostsMu.Lock()
	defer t.hostsMu.Unlock()
	old := *t.hosts.Load()
	if h := old[key]; h != nil {
		return h
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, "80"
		if scheme == "https" {
			port = "443"
		}
		if len(name) > 1 && name[0] == '[' && name[len(name)-1] == ']' {
			name = name[1 : len(name)-1]
		}
	}
	h := &h1Host{t: t, addr: net.JoinHostPort(name, port)}
	if scheme == "http" {
		h.h1.Store(true)
	} else {
		if t.tlsConfig != nil {
			h.tls = t.tlsConfig.Clone()
		} else {
			h.tls = &tls.Config{}
		}
		if h.tls.ServerName == "" {
			h.tls.ServerName = name
		}
		h.tls.NextProtos = []string{"http/1.1"}
	}
	m := make(map[hostKey]*h1Host, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = h
	t.hosts.Store(&m)
	return h
}

// roundTrip sends req on a pooled or new connection. A pooled connection
// that fails before any byte of the response arrived (the upstream closed
// it while idle) is replaced by a fresh one once: the request is
// replayable (fastEligible).
func (h *h1Host) roundTrip(req *http.Request) (*http.Response, error) {
	if err := validHeader(req.Header); err != nil {
		return nil, err
	}
	ctx := req.Context()
	fresh := false
	for {
		pc, err := h.get(ctx, fresh, false)
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		if !fresh && pc.reused && pc.nread == 0 && ctx.Err() == nil && !isTimeout(err) {
			fresh = true
			continue
		}
		return nil, err
	}
}

// handshakeError is a fast-path TLS handshake the upstream refused;
// nothing was sent, and the std transport may try.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// get takes the most recently used idle connection that is still usable,
// or dials a new one. With deferProbe, a plain connection is not probed
// here: the caller's send does it in the same wait as the answer.
func (h *h1Host) get(ctx context.Context, fresh, deferProbe bool) (*h1Conn, error) {
	if !fresh {
		h.mu.Lock()
		for n := len(h.idle); n > 0; n = len(h.idle) {
			pc := h.idle[n-1]
			h.idle[n-1] = nil
			h.idle = h.idle[:n-1]
			h.mu.Unlock()
			if h.t.idleTooLong(pc) {
				pc.close()
				h.mu.Lock()
				continue
			}
			if deferProbe && pc.rc != nil && pc.tlsState == nil {
				pc.reused, pc.probeDue = true, true
				return pc, nil
			}
			if pc.probe.idleOK() {
				pc.reused = true
				return pc, nil
			}
			pc.close()
			h.mu.Lock()
		}
		h.mu.Unlock()
	}
	return h.dial(ctx)
}

func (h *h1Host) dial(ctx context.Context) (*h1Conn, error) {
	t := h.t
	gen := t.gen.Load()
	raw, err := t.dial(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{host: h, raw: raw, conn: raw, gen: gen}
	if h.tls != nil {
		tc := tls.Client(raw, h.tls)
		hctx, cancel := ctx, context.CancelFunc(nil)
		if t.handshakeTimeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, t.handshakeTimeout)
		}
		err := tc.HandshakeContext(hctx)
		if cancel != nil {
			cancel()
		}
		if err != nil {
			_ = raw.Close()
			if ctx.Err() != nil || isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err // an answer in time is not to be had either way
			}
			h.h1.Store(false)
			return nil, &handshakeError{err}
		}
		st := tc.ConnectionState()
		pc.tlsState, pc.conn = &st, tc
	}
	pc.probe = newConnProbe(raw)
	pc.rc = rawConnOf(raw)
	pc.br = bufio.NewReaderSize(countingReader{pc}, 4<<10)
	pc.bw = bufio.NewWriterSize(pc.conn, 4<<10)
	return pc, nil
}

// put returns pc to the pool, or closes it when the pool is full or the
// connection predates CloseIdleConnections.
func (h *h1Host) put(pc *h1Conn) {
	t := h.t
	h.mu.Lock()
	if pc.gen != t.gen.Load() || len(h.idle) >= t.maxIdle {
		h.mu.Unlock()
		pc.close()
		return
	}
	if t.idleTimeout > 0 {
		pc.idleAt = time.Now()
		if !h.sweeping {
			h.sweeping = true
			if h.sweep == nil {
				h.sweep = time.AfterFunc(t.idleTimeout, h.sweepIdle)
			} else {
				h.sweep.Reset(t.idleTimeout)
			}
		}
	}
	h.idle = append(h.idle, pc)
	h.mu.Unlock()
}

// idleTooLong reports whether pc has been idle for idleTimeout or longer.
func (t *h1Transport) idleTooLong(pc *h1Conn) bool {
	return t.idleTimeout > 0 && time.Since(pc.idleAt) >= t.idleTimeout
}

// sweepIdle closes the pooled connections idle for idleTimeout or longer
// and re-arms the sweep for the oldest one left.
func (h *h1Host) sweepIdle() {
	t := h.t
	h.mu.Lock()
	n := 0
	for n < len(h.idle) && t.idleTooLong(h.idle[n]) {
		n++
	}
	expired := slices.Clone(h.idle[:n])
	h.idle = slices.Delete(h.idle, 0, n)
	if len(h.idle) > 0 {
		h.sweep.Reset(t.idleTimeout - time.Since(h.idle[0].idleAt))
	} else {
		h.sweeping = false
	}
	h.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

func (pc *h1Conn) close() { _ = pc.raw.Close() }

// roundTrip writes req and reads the response headers on the calling
// goroutine. On error the connection is closed. On success the response
// body returns the connection to the pool when it has been read to EOF.
func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// Cancellation closes the connection, which ends a blocked write or
	// read; stop() reports whether that happened.
	stop := context.AfterFunc(ctx, pc.close)
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	pc.nread = 0
	pc.limit = maxResponseHeaderBytes
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	pc.armHeaderDeadline()
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(err)
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return fail(errors.New("sidecar: upstream switched protocols unasked"))
		}
		if code < 100 || code > 199 {
			break
		}
		if n1xx == max1xxResponses {
			return fail(errors.New("sidecar: too many 1xx responses from upstream"))
		}
		pc.limit = maxResponseHeaderBytes
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	pc.limit = math.MaxInt64
	resp.TLS = pc.tlsState
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		pc.release(stop, reuse)
		return resp, nil
	}
	resp.Body = &h1Body{pc: pc, ctx: ctx, body: resp.Body, stop: stop, reuse: reuse}
	return resp, nil
}

// release pools pc after a complete response, or closes it.
func (pc *h1Conn) release(stop func() bool, reuse bool) {
	// stop fails when cancellation closed (or is closing) the connection;
	// bytes already buffered mean the upstream sent more than the
	// response: the connection is out of step.
	if stop() && reuse && pc.br.Buffered() == 0 && (pc.tlsState == nil || pc.tlsQuiet()) {
		pc.host.put(pc)
		return
	}
	pc.close()
}

// aLongTimeAgo is a read deadline that has passed: a read returns what is
// buffered or times out at once.
var aLongTimeAgo = time.Unix(1, 0)

// tlsQuiet reports whether the TLS connection holds no decrypted bytes
// after the response (the probe sees only the socket, not the TLS layer's
// buffer). A read with a passed deadline returns them without a syscall,
// and a read timeout leaves a TLS connection usable.
func (pc *h1Conn) tlsQuiet() bool {
	pc.readBy = time.Time{}
	if pc.conn.SetReadDeadline(aLongTimeAgo) != nil {
		return false
	}
	pc.holdDeadline = true
	_, err := pc.br.Peek(1)
	pc.holdDeadline = false
	if err == nil || !isTimeout(err) {
		return false
	}
	return pc.conn.SetReadDeadline(time.Time{}) == nil
}

// armHeaderDeadline bounds the wait for the response head by the
// transport's headerTimeout. A deadline left from the previous response
// that is still at least headerTimeout away is kept (set one sixteenth
// beyond it, so the bound is between headerTimeout and 17/16 of it): back
// to back responses then re-arm the runtime's timer only now and then.
func (pc *h1Conn) armHeaderDeadline() {
	pc.armDeadline(pc.host.t.headerTimeout)
}

// armDeadline is armHeaderDeadline for a wait of d; it returns the time
// (zero when d is not positive).
func (pc *h1Conn) armDeadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	now := time.Now()
	if !pc.readBy.IsZero() && pc.readBy.Sub(now) >= d {
		return now
	}
	pc.readBy = now.Add(d + d/16)
	if pc.conn.SetReadDeadline(pc.readBy) != nil {
		pc.readBy = time.Time{}
	}
	return now
}

// setDeadline sets an exact read deadline for the head (zero: none).
func (pc *h1Conn) setDeadline(at time.Time) {
	pc.readBy = at
	_ = pc.conn.SetReadDeadline(at)
}

// countingReader reads pc's connection, counting the bytes and enforcing
// the response header limit.
type countingReader struct{ pc *h1Conn }

func (r countingReader) Read(p []byte) (int, error) {
	pc := r.pc
	if pc.limit <= 0 {
		return 0, fmt.Errorf("sidecar: upstream response headers exceed %d bytes", maxResponseHeaderBytes)
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	if !pc.readBy.IsZero() && pc.limit > maxResponseHeaderBytes && !pc.holdDeadline {
		// The body: no deadline (armHeaderDeadline left the head's).
		pc.readBy = time.Time{}
		_ = pc.conn.SetReadDeadline(time.Time{})
	}
	n, err := pc.conn.Read(p)
	pc.nread += int64(n)
	pc.limit -= int64(n)
	return n, err
}

// h1Body is a fast-path response body. Read to EOF, its connection goes
// back to the pool; closed earlier or failed, the connection is closed.
type h1Body struct {
	pc    *h1Conn
	ctx   context.Context
	body  io.ReadCloser
	stop  func() bool
	reuse bool
	state atomic.Int32 // bodyOpen, bodyEOF or bodyClosed
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyClosed
)

func (b *h1Body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		if b.state.CompareAndSwap(bodyOpen, bodyEOF) {
			b.pc.release(b.stop, b.reuse)
		}
	} else if err != nil {
		if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
			b.stop()
			b.pc.close()
		}
		if b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.stop()
		b.pc.close()
	}
	return nil
}

// validHeader applies the std transport's checks: field names are tokens,
// values hold no control characters but tab.
func validHeader(h http.Header) error {
	for k, vv := range h {
		if !validHeaderName(k) { // an RFC 9110 token, as config.go checks tenant_header
			return fmt.Errorf("sidecar: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return fmt.Errorf("sidecar: invalid value of header field %q", k)
			}
		}
	}
	return nil
}

func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
