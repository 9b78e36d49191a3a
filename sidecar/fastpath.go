package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path serves the common egress request — a bodyless GET, HEAD or
// OPTIONS in origin form to a none, bearer or mtls route with an HTTP/1.1
// upstream — on the connection's own goroutine with no net/http machinery:
// a strict head parser (fasthead.go), the request written upstream in one
// write from the client's own header lines, the response head parsed and
// forwarded, the body streamed. Profiles of the net/http path showed the
// time going to allocation and GC (a Request, Header maps, URL, the
// ReverseProxy's copies), textproto canonicalisation, and goroutine
// hand-offs; this path allocates nothing per request.
//
// Everything else — any head outside the strict subset (parseFastHead),
// the token API, refusals of every kind, routes that sign, exchange user
// tokens or read a tenant header, HTTP/2 upstreams, bodies, upgrades — is
// handed over, byte for byte from the start of its head, to the net/http
// server behind strictConn, exactly as before: the same checks, answers
// and reasons. A connection handed over stays with net/http.

// fastServer accepts the proxy listener's connections and runs the fast
// loop on each.
type fastServer struct {
	s             *Server
	ln            *limitListener
	slow          *handoffListener
	idleTimeout   time.Duration
	headerTimeout time.Duration
	// pipelined, when set (tests), runs after a request is served and the
	// connection marked idle, before the loop takes up a next head already
	// read: where a concurrent Shutdown may mark the connection closed.
	pipelined func(*fastConn)

	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	closing  atomic.Bool
	shutdown chan struct{}
}

func newFastServer(s *Server, ln *limitListener, idle, header time.Duration) *fastServer {
	return &fastServer{
		s:             s,
		ln:            ln,
		slow:          newHandoffListener(ln.Addr()),
		idleTimeout:   idle,
		headerTimeout: header,
		conns:         map[*fastConn]struct{}{},
		shutdown:      make(chan struct{}),
	}
}

// serve accepts until the listener is closed.
func (fs *fastServer) serve() error {
	for {
		c, err := fs.ln.Accept()
		if err != nil {
			if fs.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		lc, ok := c.(*limitConn)
		if !ok { // not strict: cannot happen for the proxy listener
			fs.slow.push(c)
			continue
		}
		fc := fastConnPool.Get().(*fastConn)
		fc.lc, fc.fs = lc, fs
		fc.state.Store(fcIdle) // not yet in conns: nothing else sees it
		fs.mu.Lock()
		if fs.closing.Load() {
			// Close (or Shutdown) went through conns before this one was
			// in it: close it here, or it would be served after the close.
			fs.mu.Unlock()
			fc.lc, fc.fs = nil, nil
			fastConnPool.Put(fc)
			_ = lc.Close()
			continue
		}
		fs.conns[fc] = struct{}{}
		fs.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown stops accepting, closes idle connections and waits for the
// active ones to finish their request (until ctx is done, then it closes
// them too).
func (fs *fastServer) Shutdown(ctx context.Context) error {
	if fs.closing.Swap(true) {
		return nil
	}
	_ = fs.ln.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		fs.mu.Lock()
		n := len(fs.conns)
		for fc := range fs.conns {
			if fc.state.CompareAndSwap(fcIdle, fcClosed) {
				closeConn(fc.lc)
			}
		}
		fs.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			fs.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes every connection at once.
func (fs *fastServer) Close() {
	fs.closing.Store(true)
	_ = fs.ln.Close()
	fs.mu.Lock()
	for fc := range fs.conns {
		fc.state.Store(fcClosed)
		closeConn(fc.lc)
	}
	fs.mu.Unlock()
}

// closeConn closes a connection of the fast loop without waiting for its
// loop: the loop runs inside the connection's RawConn.Read (loop), and a
// Close waits until it leaves it, which it does only once it notices (a
// write to the client fails, the client check while the upstream has not
// answered, the upstream's next bytes of a streamed body). The close marks
// the connection closed at once, as before; the socket is closed when the
// loop leaves.
func closeConn(lc *limitConn) {
	go func() { _ = lc.Close() }()
}

// handoffListener passes connections from the fast loop to the net/http
// server.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// fastConn is one client connection on the fast loop. Its buffers are
// pooled.
type fastConn struct {
	fs    *fastServer
	lc    *limitConn
	state atomic.Int32 // fcIdle, fcActive, fcClosed
	rbuf  []byte       // request heads
	r, w  int          // unread bytes are rbuf[r:w]
	ip    []byte       // the client's IP address (X-Forwarded-For)
	// probe looks whether the client went away while the loop waits for
	// the upstream (made on the first wait that needs it).
	probe *connProbe
	// readBy is the read deadline set on lc (zero: none); readByExact: it
	// is a head's headerTimeout, not the coarse idle one.
	readBy      time.Time
	readByExact bool
	// headStart is when the loop first waited for more of the current
	// head (zero: it has not): the head must be complete headerTimeout
	// after it, in total, on net/http's side of a hand-off too.
	headStart time.Time
	// drained: the last raw read left nothing to read and the loop has
	// not waited since (loop, read); inq: the kernel says how much a read
	// left (reportLeft), into oob.
	drained bool
	inq     bool
	oob     [32]byte
	ctx     context.Context
	stop    context.CancelFunc
	// The buffers of one request, held only while there is one: an idle
	// keep-alive connection keeps just rbuf.
	*fastScratch
}

type fastScratch struct {
	req   fastReq
	out   []byte // the request upstream, then the response to the client
	line  []byte // a response line longer than the upstream reader's buffer
	hdrs  []byte // the response head's kept fields
	connv []byte // the response's Connection values
	fastTraceState

	// A 401 to the route's token (reauth.go): ra is the route's reauth
	// while the request carries the token sent; retried is set on the
	// second attempt; again is the header line to send it with; why the
	// reason added to a 401 passed on.
	ra      *reauth
	sent    string
	retried bool
	again   []byte
	why     string
	acc     fastAccess

	// An oauth1 route's Authorization line (signFast) and the URL it was
	// signed over.
	sig    []byte
	sigURL url.URL
}

var fastScratchPool = sync.Pool{New: func() any {
	return &fastScratch{out: make([]byte, 0, 4<<10), hdrs: make([]byte, 0, 1<<10)}
}}

// releaseScratch returns the request buffers to the pool (unless one grew
// large).
func (fc *fastConn) releaseScratch() {
	sc := fc.fastScratch
	if sc == nil {
		return
	}
	fc.fastScratch = nil
	if cap(sc.out) > 64<<10 || cap(sc.line) > 64<<10 || cap(sc.hdrs) > 64<<10 || cap(sc.sig) > 64<<10 {
		return
	}
	sc.req, sc.acc = fastReq{}, fastAccess{}
	sc.ra, sc.sent, sc.retried, sc.again, sc.why = nil, "", false, nil, ""
	sc.out, sc.line, sc.hdrs, sc.connv, sc.sig = sc.out[:0], sc.line[:0], sc.hdrs[:0], sc.connv[:0], sc.sig[:0]
	sc.fastTraceState = fastTraceState{traceLine: sc.traceLine[:0]}
	fastScratchPool.Put(sc)
}

const (
	fcIdle int32 = iota
	fcActive
	fcClosed
)

// fastHeadBuf bounds the request heads the fast loop reads; a larger head
// (up to net/http's 1 MiB) is handed over.
const fastHeadBuf = 4 << 10

var fastConnPool = sync.Pool{New: func() any { return &fastConn{rbuf: make([]byte, fastHeadBuf)} }}

func (fc *fastConn) serve() {
	fs := fc.fs
	fc.ctx, fc.stop = context.WithCancel(context.Background())
	fc.ip = fc.ip[:0]
	if host, _, err := net.SplitHostPort(fc.lc.RemoteAddr().String()); err == nil {
		fc.ip = append(fc.ip, host...) // as rewrite does
	}
	handedOff := fc.loop()
	fc.stop()
	fs.mu.Lock()
	delete(fs.conns, fc)
	fs.mu.Unlock()
	if !handedOff {
		_ = fc.lc.Close()
	}
	fc.releaseScratch()
	fc.lc, fc.fs, fc.ctx, fc.stop, fc.r, fc.w = nil, nil, nil, nil, 0, 0
	fc.readBy, fc.readByExact, fc.headStart, fc.probe = time.Time{}, false, time.Time{}, nil
	fastConnPool.Put(fc)
}

// Outcomes of run.
const (
	runEnd    = iota // the connection is done: close it
	runHanded        // handed to net/http
	runWait          // (raw mode) wait until the client's socket is readable
)

// errWait: a raw read found nothing to read (run returns runWait).
var errWait = errors.New("sidecar: wait for the client")

// loop serves requests until the connection ends or is handed to net/http
// (true).
//
// On a TCP connection it runs inside one RawConn.Read for the life of the
// connection, reading the socket itself (read), so that waiting for the
// next request costs no failed read. Go's net.Conn.Read always tries the
// read first and only then waits for the poller, because each Read resets
// the poller's readiness for the socket: between back-to-back requests of
// a keep-alive client that is one read per request that fails with EAGAIN
// (strace and perf counted 1.9 of them per proxied request, client and
// upstream side together, beside 2 reads and 2 writes that do the work).
// Inside one RawConn.Read the readiness is reset once, at the start: after
// a read that left nothing to read (the socket is drained), any byte that
// arrives later, while the request is served, marks the socket readable,
// so the loop may wait at once instead of reading first (waiting on a
// readiness already consumed costs one failed read, never a hang). On
// Linux the kernel says with each read how much it left (TCP_INQ,
// rawReadLeft), the end of the stream included; elsewhere a read that
// returned less than the buffer is taken for drained, which misses an end
// that came with the last bytes (a client that half-closes after its last
// request is closed only at client_idle_timeout there) and bytes behind
// TCP urgent data.
// Writes to the client go through the connection as before (the write
// side has its own lock); closing the connection from another goroutine
// (Shutdown) wakes the wait, but its Close returns only once this loop
// leaves the RawConn.Read, so nothing closes the connection from inside
// (handOffRun) and Shutdown does not wait for it (closeConn).
func (fc *fastConn) loop() bool {
	rc := rawConnOf(fc.lc.Conn)
	if rc == nil {
		return fc.run(-1) == runHanded && fc.handOff()
	}
	res, woken := runEnd, false
	fc.drained = false // the start of RawConn.Read reset the readiness: read first
	err := rc.Read(func(fd uintptr) bool {
		if woken {
			fc.drained = false // readable, or an error (deadline, close) to see
		} else {
			fc.inq = reportLeft(int(fd))
		}
		woken = true
		res = fc.run(int(fd))
		return res != runWait
	})
	if err != nil {
		// The wait ended: a deadline passed or the connection was closed.
		if fc.w > fc.r {
			return fc.handOff() // net/http answers a cut-off head as it did
		}
		return false
	}
	return res == runHanded && fc.handOff()
}

// read reads the client's next bytes: with Read when fd < 0, else from the
// socket itself without waiting; errWait when there is nothing to read
// yet (or, drained, nothing can have arrived that the poller did not
// mark).
func (fc *fastConn) read(fd int, b []byte) (int, error) {
	if fd < 0 {
		return fc.lc.Read(b)
	}
	if fc.drained {
		return 0, errWait
	}
	var n int
	var err error
	left := false
	if fc.inq {
		n, left, err = rawReadLeft(fd, b, fc.oob[:])
	} else {
		n, err = rawRead(fd, b)
		left = n == len(b)
	}
	if err == nil {
		fc.drained = !left
	}
	return n, err
}

// run serves requests until the connection ends, is handed to net/http or
// (fd >= 0) has to wait for the client's next bytes.
func (fc *fastConn) run(fd int) int {
	fs := fc.fs
	for {
		verdict, n := headMore, 0
		if fc.r == fc.w {
			fc.r, fc.w = 0, 0
			fc.releaseScratch() // idle: keep no request buffers
		} else {
			if fc.fastScratch == nil {
				fc.fastScratch = fastScratchPool.Get().(*fastScratch)
			}
			verdict, n = parseFastHead(fc.rbuf[fc.r:fc.w], &fc.req)
		}
		switch verdict {
		case headMore:
			if fc.w == len(fc.rbuf) {
				if fc.r == 0 {
					return fc.handOffRun() // a head too big for the buffer
				}
				fc.w = copy(fc.rbuf, fc.rbuf[fc.r:fc.w])
				fc.r = 0
			}
			fc.armReadDeadline()
			m, err := fc.read(fd, fc.rbuf[fc.w:])
			if err == errWait {
				return runWait
			}
			fc.w += m
			if err != nil && m == 0 {
				if fc.w > fc.r {
					return fc.handOffRun() // net/http answers a cut-off head as it did
				}
				return runEnd
			}
			if fc.r == 0 && fc.w == m {
				// The first bytes of a request: the connection is active.
				if !fc.state.CompareAndSwap(fcIdle, fcActive) {
					return runEnd // shutting down
				}
			}
			continue
		case headSlow:
			return fc.handOffRun()
		}
		if fc.state.Load() != fcActive && !fc.state.CompareAndSwap(fcIdle, fcActive) {
			return runEnd // closed by Shutdown or Close: serve nothing more
		}
		g := fs.s.gen.Load()
		if g == nil {
			return fc.handOffRun()
		}
		res := g.proxy.serveFast(fc, fc.rbuf[fc.r:fc.r+n])
		switch res {
		case fastSlow:
			// A head of the fast subset for the net/http handler: served
			// here, so the connection stays on the fast loop.
			if !fc.serveHandler(fs.s, fc.rbuf[fc.r:fc.r+n]) {
				return runEnd
			}
		case fastClose:
			return runEnd
		}
		fc.r += n
		fc.headStart = time.Time{}
		if fs.closing.Load() || !fc.state.CompareAndSwap(fcActive, fcIdle) {
			return runEnd
		}
		if fc.r < fc.w {
			// Pipelined: the next head is (partly) here already. Shutdown
			// or Close may have marked the connection closed since it was
			// marked idle: a Store would undo that and serve on.
			if fs.pipelined != nil {
				fs.pipelined(fc)
			}
			if !fc.state.CompareAndSwap(fcIdle, fcActive) {
				return runEnd
			}
		}
	}
}

// armReadDeadline bounds the wait for the next bytes of a request head:
// idleTimeout between requests; within a head, headerTimeout (exactly)
// from the first wait for more of it, once: a head must be complete within
// headerTimeout in total, however its bytes are spread (a deadline renewed
// on every read let a client that sends a byte now and then hold the
// connection for as long as its head had bytes to send). The first wait
// comes right after the read that brought the head's first bytes, so the
// bound runs from about then; a head read whole in one read costs no clock
// reading. An idle deadline left from the previous request that is still
// at least idleTimeout away is kept (it is set one sixteenth beyond, so a
// keep-alive connection idles between idleTimeout and 17/16 of it): back
// to back requests re-arm the runtime's timer only now and then.
func (fc *fastConn) armReadDeadline() {
	fs := fc.fs
	d, exact := fs.idleTimeout, false
	inHead := fc.w > fc.r
	if inHead || d <= 0 {
		d, exact = fs.headerTimeout, true
	}
	if d <= 0 {
		if !fc.readBy.IsZero() {
			fc.readBy = time.Time{}
			_ = fc.lc.SetReadDeadline(time.Time{})
		}
		return
	}
	if exact && inHead {
		if fc.headStart.IsZero() {
			fc.headStart = time.Now()
		}
		by := fc.headStart.Add(d)
		if fc.readByExact && fc.readBy.Equal(by) {
			return // armed at the head's first wait
		}
		fc.readBy, fc.readByExact = by, true
		_ = fc.lc.SetReadDeadline(by)
		return
	}
	now := time.Now()
	if exact {
		fc.readBy = now.Add(d)
		fc.readByExact = true
	} else {
		if !fc.readByExact && !fc.readBy.IsZero() && fc.readBy.Sub(now) >= d {
			return
		}
		fc.readBy, fc.readByExact = now.Add(d+d/16), false
	}
	_ = fc.lc.SetReadDeadline(fc.readBy)
}

// handOffRun is handOff as an outcome of run: loop hands the connection
// over once out of the RawConn.Read. Not inside it: a Close of the
// connection there (push's, when net/http no longer accepts) would wait for
// the read reference this goroutine holds, for ever.
func (fc *fastConn) handOffRun() int {
	return runHanded
}

// handOff gives the connection, with the bytes read from the start of the
// current head, to the net/http server behind strictConn.
func (fc *fastConn) handOff() bool {
	fc.readBy = time.Time{}
	_ = fc.lc.SetReadDeadline(time.Time{})
	sc := &strictConn{limitConn: fc.lc, headerTimeout: fc.fs.headerTimeout}
	if fc.w > fc.r {
		sc.pre = append([]byte(nil), fc.rbuf[fc.r:fc.w]...)
		if sc.headerTimeout > 0 {
			// The head's bound runs on from its start here, not afresh.
			start := fc.headStart
			if start.IsZero() {
				start = time.Now()
			}
			sc.seedHead(start.Add(sc.headerTimeout))
		}
	}
	fc.fs.slow.push(sc)
	return true
}

// Outcomes of serveFast.
const (
	fastDone  = iota // answered; the connection carries on
	fastSlow         // not for the fast path: hand the connection over
	fastClose        // answered (or failed midway); close the connection
)

// serveFast serves one request head of the fast subset, or returns
// fastSlow before anything was written or sent anywhere.
func (p *Proxy) serveFast(fc *fastConn, head []byte) int {
	q := &fc.req
	path := q.path
	if hasPrefix(path, "/.credbroker/") || hasDotSegment(b2s(path)) {
		return fastSlow
	}
	name := path[1:]
	rest := path[len(path):]
	for i, c := range name {
		if c == '/' {
			name, rest = name[:i], name[i:]
			break
		}
	}
	r := p.router.byName[b2s(name)]
	if r == nil || !r.fast || !p.hosts.allowed(b2s(q.host)) {
		return fastSlow
	}
	h := r.fastUp.Load()
	if h == nil {
		if r.target.Scheme == "http" {
			h = r.transport.host(r.target.Scheme, r.target.Host)
		} else if h = (*r.transport.hosts.Load())[hostKey{r.target.Scheme, r.target.Host}]; h == nil {
			// An https:// pool is made by the std transport's first answer
			// in HTTP/1.1 (after that transport has set up its TLS
			// configuration, which the pool clones).
			return fastSlow
		}
		r.fastUp.Store(h)
	}
	if !h.h1.Load() {
		return fastSlow // an https upstream not (yet) known to speak HTTP/1.1
	}
	if r.cert != nil && !r.certReady(p.o.now) {
		return fastSlow
	}
	// tctx is the request's context: with tracing on it carries the span
	// context the upstream gets (trace.SpanContextFromContext), as the
	// request's context does on net/http's path.
	tctx := fc.ctx
	if p.o.tracer != nil {
		// The sampler drops it: served here with the traceparent of an
		// unrecorded span; it records it: net/http's path (tracing.go).
		var ok bool
		if tctx, ok = p.fastTrace(fc); !ok {
			return fastSlow
		}
	}
	var authLine []byte
	inject := r.replace || !q.auth
	fc.ra, fc.sent, fc.retried, fc.why = nil, "", false, ""
	if r.tokens != nil && inject {
		tok, err := r.tokens.Token(tctx, TokenRequest{Tenant: r.tenant})
		if err != nil {
			return fastSlow // net/http's path answers 503 token-unavailable
		}
		bh := r.bearerFor(tok.AccessToken)
		authLine = bh.line
		if authLine == nil {
			return fastSlow // a token no header can carry: net/http's path refuses it
		}
		if r.reauth != nil {
			fc.ra, fc.sent = r.reauth, bh.token
		}
	}
	if r.fastSigner != nil && inject {
		if authLine = r.signFast(fc, rest); authLine == nil {
			return fastSlow // net/http's path answers 503 signing-failed
		}
	}
	start := time.Now()
	al := p.access
	if al != nil {
		fc.acc = fastAccess{on: true}
	}
	status, keep := r.forwardFast(fc, h, rest, authLine)
	for fc.again != nil {
		// The upstream rejected the token: once more with the new one.
		authLine, fc.again, fc.retried = fc.again, nil, true
		status, keep = r.forwardFast(fc, h, rest, authLine)
	}
	r.metrics.count(status)
	r.metrics.fast.Inc()
	d := time.Since(start)
	r.metrics.duration.Observe(d.Seconds())
	if al != nil {
		al.logFast(fc, r, status, start, d)
	}
	if !keep {
		return fastClose
	}
	return fastDone
}

// certReady reports whether the route's client certificate is loaded and
// valid (net/http's path answers 503 otherwise), noting a rotation.
func (r *route) certReady(now func() time.Time) bool {
	c := r.cert.Current()
	if c == nil {
		return false
	}
	if c.Leaf != nil {
		if !now().Before(c.Leaf.NotAfter) {
			return false
		}
		r.noteLeaf(c)
	}
	return true
}

// errResponseCut is an upstream failure after the response head was sent
// to the client: the connection is closed (as net/http's ReverseProxy
// aborts the handler).
var errResponseCut = errors.New("sidecar: upstream response cut short")

// errReauth: the upstream rejected the route's token and the request is to
// be sent again with fastConn.again (nothing was written to the client).
var errReauth = errors.New("sidecar: token rejected, sending again")

// forwardFast sends the request upstream and streams the response back.
// It returns the status for the metrics and whether the client connection
// may carry another request.
func (r *route) forwardFast(fc *fastConn, h *h1Host, rest, authLine []byte) (int, bool) {
	q := &fc.req
	out := append(fc.out[:0], q.method...)
	out = append(out, ' ')
	out = r.appendTarget(out, q, rest)
	out = append(out, " HTTP/1.1\r\nHost: "...)
	out = append(out, r.target.Host...)
	out = append(out, "\r\n"...)
	dropAuth := q.auth && authLine != nil
	for i := range q.n {
		f := &q.hdr[i]
		if f.drop || f.auth && dropAuth {
			continue
		}
		out = append(out, f.name...)
		out = append(out, ": "...)
		out = append(out, f.val...)
		out = append(out, "\r\n"...)
	}
	out = append(out, authLine...)
	out = append(out, fc.traceLine...) // empty unless traced (tracing.go)
	if len(fc.ip) > 0 {
		out = append(out, "X-Forwarded-For: "...)
		out = append(out, fc.ip...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "X-Forwarded-Host: "...)
	out = append(out, q.host...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	fc.out = out
	isHead := len(q.method) == 4 && q.method[0] == 'H'
	if fc.acc.on {
		fc.acc.upStart = time.Now()
	}

	for fresh := false; ; fresh = true {
		pc, err := h.get(fc.ctx, fresh, true)
		if err != nil {
			return r.fastError(fc, err)
		}
		status, keep, err := fc.exchange(pc, isHead)
		for err == errIdleStale {
			// Nothing was sent: the next pooled connection, or a new one,
			// as get's own probe goes on (a pool's other connections are
			// not given up for a dial the upstream may refuse).
			if pc, err = h.get(fc.ctx, fresh, true); err != nil {
				return r.fastError(fc, err)
			}
			status, keep, err = fc.exchange(pc, isHead)
		}
		if err == nil {
			return status, keep
		}
		if err == errReauth {
			return status, true // nothing was written: serveFast sends it again
		}
		if err == errResponseCut {
			return status, false
		}
		if err == errClientLeft {
			if fc.acc.on {
				fc.acc.upDur = time.Since(fc.acc.upStart)
			}
			return 499, false // nobody reads an answer (as errorHandler counts it)
		}
		if !fresh && pc.reused && pc.nread == 0 && fc.ctx.Err() == nil && !isTimeout(err) {
			continue // the upstream closed the idle connection meanwhile
		}
		return r.fastError(fc, err)
	}
}

// appendTarget appends the request target sent upstream: the route's
// base path, the rest of the app's path, and the route's query before the
// app's (as the net/http path's rewrite builds them).
func (r *route) appendTarget(out []byte, q *fastReq, rest []byte) []byte {
	out = append(out, r.baseRawPath...)
	if len(rest) == 0 && r.baseRawPath == "" {
		out = append(out, '/')
	}
	out = append(out, rest...)
	switch {
	case r.target.RawQuery != "":
		out = append(out, '?')
		out = append(out, r.target.RawQuery...)
		if len(q.query) > 0 {
			out = append(out, '&')
			out = append(out, q.query...)
		}
	case len(q.query) > 0:
		out = append(out, '?')
		out = append(out, q.query...)
	}
	return out
}

// signFast returns the Authorization line of an oauth1 route for the
// fast path's bodyless request, signed over the URL the upstream gets
// (taken from the very target sent, so the base string is the one the
// net/http path signs), or nil when it cannot be signed here. The line is
// built in fc.sig; the URL, the method and the Content-Type the signer
// sees are views of the request's buffers (HeaderSigner retains none).
func (r *route) signFast(fc *fastConn, rest []byte) []byte {
	q := &fc.req
	t := r.appendTarget(fc.out[:0], q, rest)
	fc.out = t[:0]
	u := &fc.sigURL
	if !signURL(u, t) {
		pu, err := url.ParseRequestURI(string(t))
		if err != nil {
			return nil
		}
		u = pu
	}
	u.Scheme, u.Host = r.target.Scheme, r.target.Host
	var ct string
	for i := range q.n {
		if f := &q.hdr[i]; !f.drop && strings.EqualFold(b2s(f.name), "Content-Type") {
			ct = b2s(f.val)
			break
		}
	}
	const name = "Authorization: "
	line, err := r.fastSigner.AppendAuthorization(append(fc.sig[:0], name...), b2s(q.method), u, ct, nil)
	fc.sigURL = url.URL{} // no views of the buffers past the request
	if err != nil || len(line) < len(name) || !validFieldValue(b2s(line[len(name):])) {
		r.log.Debug("signing failed", "err", err)
		return nil
	}
	fc.sig = append(line, "\r\n"...)
	return fc.sig
}

// signURL sets u to the origin-form target t as url.ParseRequestURI
// parses it, without allocating, when that is simple: t starts with "/",
// holds no control byte and its path no percent-escape. Then the decoded
// path is the path as sent, and with RawPath set to it too, EscapedPath is
// ParseRequestURI's. Otherwise it reports false and u is unchanged.
func signURL(u *url.URL, t []byte) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	qm := -1
	for i, c := range t {
		switch {
		case c < 0x20 || c == 0x7f:
			return false
		case c == '%' && qm < 0:
			return false
		case c == '?' && qm < 0:
			qm = i
		}
	}
	*u = url.URL{}
	path := t
	if qm >= 0 {
		path = t[:qm]
		u.RawQuery = b2s(t[qm+1:])
		u.ForceQuery = u.RawQuery == ""
	}
	u.Path, u.RawPath = b2s(path), b2s(path)
	return true
}

// fastError answers an upstream failure before any byte of the response
// was sent, as errorHandler does on net/http's path.
func (r *route) fastError(fc *fastConn, err error) (int, bool) {
	if fc.retried {
		fc.ra.retries[retryFailed].Inc()
	}
	status, reason, msg := http.StatusBadGateway, ReasonUpstreamUnreachable, "upstream request failed"
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		status, reason, msg = http.StatusGatewayTimeout, ReasonUpstreamTimeout, "upstream did not answer in time"
	}
	r.metrics.m.refused.WithLabelValues(reason).Inc()
	r.log.Debug("upstream failed", "err", err)
	body := "credbroker: route " + r.name + ": " + msg + "\n"
	fc.acc.reason, fc.acc.nOut = reason, int64(len(body))
	if fc.acc.on {
		fc.acc.upDur = time.Since(fc.acc.upStart)
	}
	b := append(fc.out[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"+HeaderError+": "...)
	b = append(b, reason...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	fc.out = b
	if _, werr := fc.lc.Write(b); werr != nil {
		return status, false
	}
	return status, true
}

// exchange writes fc.out on pc and relays the response to the client. An
// error before anything was written to the client leaves the client
// connection usable (the caller may retry or answer 502); errResponseCut
// means the client got part of a response.
func (fc *fastConn) exchange(pc *h1Conn, isHead bool) (status int, keep bool, err error) {
	pc.nread = 0
	pc.limit = maxResponseHeaderBytes
	sentAt, waitErr, err := fc.send(pc)
	if err != nil {
		pc.close()
		return 0, false, err
	}
	sentAt, err = fc.awaitResponse(pc, sentAt, waitErr)
	if err != nil {
		pc.close()
		return 0, false, err
	}
	var rh respHead
	for n1xx := 0; ; n1xx++ {
		if err := fc.readRespHead(pc, &rh); err != nil {
			pc.close()
			return 0, false, err
		}
		if rh.code == http.StatusSwitchingProtocols {
			pc.close()
			return 0, false, errors.New("sidecar: upstream switched protocols unasked")
		}
		if rh.code >= 200 {
			if rh.code == http.StatusUnauthorized && fc.ra != nil && !fc.retried {
				if fc.again, fc.why = fc.ra.reauthFast(fc, fc.sent, fc.req.method); fc.again != nil {
					pc.close() // the 401's body is not read
					return rh.code, false, errReauth
				}
			} else if fc.retried {
				if rh.code == http.StatusUnauthorized {
					fc.ra.retries[retryRejected].Inc()
					fc.why = ReasonTokenRejectedAgain
				} else {
					fc.ra.retries[retryOK].Inc()
				}
			}
			break
		}
		if n1xx == max1xxResponses {
			pc.close()
			return 0, false, errors.New("sidecar: too many 1xx responses from upstream")
		}
		// Interim responses (103 Early Hints) go to the client at once, as
		// net/http's ReverseProxy forwards them.
		fc.out = fc.appendKept(appendStatusLine(fc.out[:0], rh.code), &rh)
		fc.out = append(fc.out, "\r\n"...)
		if _, err := fc.lc.Write(fc.out); err != nil {
			pc.close()
			return rh.code, false, errResponseCut
		}
		if h := pc.host.t.headerTimeout; h > 0 && !sentAt.IsZero() {
			pc.setDeadline(sentAt.Add(h)) // the final head: within the same bound
		}
	}
	if fc.acc.on {
		fc.acc.upDur = time.Since(fc.acc.upStart)
	}
	pc.limit = 1<<63 - 1

	noBody := isHead || rh.code == http.StatusNoContent || rh.code == http.StatusNotModified
	out := fc.appendKept(appendStatusLine(fc.out[:0], rh.code), &rh)
	if fc.why != "" {
		fc.acc.reason = fc.why
		out = append(out, HeaderError+": "...)
		out = append(out, fc.why...)
		out = append(out, "\r\n"...)
	}
	mode := bodyNone
	switch {
	case noBody:
		if rh.cl >= 0 && rh.code != http.StatusNoContent {
			out = append(out, "Content-Length: "...)
			out = strconv.AppendInt(out, rh.cl, 10)
			out = append(out, "\r\n"...)
		}
	case rh.chunked:
		mode = bodyChunked
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case rh.cl >= 0:
		mode = bodyLength
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, rh.cl, 10)
		out = append(out, "\r\n"...)
	default:
		mode = bodyUntilClose
		rh.close = true
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	out = append(out, "\r\n"...)
	fc.out = out
	ok, clientOK := fc.relayBody(pc, mode, rh.cl)
	if ok {
		if _, werr := fc.lc.Write(fc.out); werr != nil {
			clientOK = false
		}
	}
	if ok && !rh.close && pc.br.Buffered() == 0 && (pc.tlsState == nil || pc.tlsQuiet()) {
		pc.host.put(pc)
	} else {
		pc.close()
	}
	if !ok {
		return rh.code, false, errResponseCut
	}
	return rh.code, clientOK, nil
}

// errIdleStale: a pooled connection had bytes to read, or was closed,
// before the request was sent on it (send's probe); nothing was sent.
var errIdleStale = errors.New("sidecar: pooled upstream connection not idle")

// send writes the request upstream. When the connection's socket is at
// hand (pc.rc) it does so inside one RawConn.Read that then waits for the
// socket to become readable: the poller's readiness is reset before the
// write, so the answer is waited for without a read that fails first (see
// loop), and the reader that follows finds the answer there. On a plain
// connection the probe of a pooled connection (get leaves it to send:
// probeDue) is that wait's first read: bytes there before the request was
// written are not its answer (an unsolicited response, or the upstream
// closing the idle connection), and the connection is not used
// (errIdleStale; the request goes on a fresh one). So a request on a
// pooled connection costs the probe, the write and the answer's read, where
// it used to cost those and a failed read besides.
//
// It returns when the request was sent (zero: awaitResponse arms the wait)
// and the error that ended send's wait for the answer (its first step's
// deadline), which awaitResponse takes as its first wait's.
func (fc *fastConn) send(pc *h1Conn) (sentAt time.Time, waitErr, err error) {
	if pc.rc == nil {
		_, err := pc.conn.Write(fc.out)
		return time.Time{}, nil, err
	}
	_, step := fc.firstWait(pc)
	sentAt = pc.armDeadline(step)
	st := &pc.send
	st.out, st.probe, st.sent, st.err = fc.out, pc.probeDue, false, nil
	pc.probeDue = false
	if st.step == nil {
		st.step = pc.sendStep // one method value per connection, not a closure per request
	}
	err = pc.rc.Read(st.step)
	werr, sent := st.err, st.sent
	st.out, st.err = nil, nil
	if werr != nil {
		return sentAt, nil, werr
	}
	if !sent {
		return sentAt, nil, err // closed before anything was written
	}
	return sentAt, err, nil
}

// sendStep is send's RawConn.Read callback (its state in pc.send).
func (pc *h1Conn) sendStep(fd uintptr) bool {
	st := &pc.send
	if st.sent {
		return true // readable: the response reader takes it from here
	}
	if st.probe {
		if _, err := rawRead(int(fd), pc.probeBuf[:]); err != errWait {
			st.err = errIdleStale
			return true
		}
	}
	// On TLS, Write encrypts and writes to the socket: the write side,
	// which this read does not hold (the handshake is done at dial).
	if _, st.err = pc.conn.Write(st.out); st.err != nil {
		return true
	}
	st.sent = true
	return false // wait for the answer
}

// errClientLeft: the client closed its connection while the fast loop
// waited for the upstream's answer; the upstream connection is closed.
var errClientLeft = errors.New("sidecar: client went away")

// awaitResponse waits for the first byte of the response, and arms the
// deadline for the rest of the head. It waits in steps of clientCheck
// (or headerTimeout when shorter): each time one passes, it looks whether
// the client is still connected (a non-blocking peek at its socket,
// connProbe.peerGone) and returns errClientLeft when not, so that an
// abandoned request does not hold an upstream connection (and the
// upstream's work) until the upstream answers. A response that comes
// within the first step costs nothing extra.
//
// sent is when send armed the first step (zero: armed here); firstErr,
// when not nil, is how send's wait in that step ended.
func (fc *fastConn) awaitResponse(pc *h1Conn, sent time.Time, firstErr error) (time.Time, error) {
	h, step := fc.firstWait(pc)
	if sent.IsZero() {
		sent = pc.armDeadline(step)
	}
	waited := false
	for {
		err := firstErr
		if err != nil {
			firstErr = nil
		} else {
			_, err = pc.br.Peek(1)
		}
		if err == nil {
			break
		}
		if !isTimeout(err) || step <= 0 {
			return sent, err
		}
		if fc.probe == nil {
			fc.probe = newConnProbe(fc.lc.Conn)
		}
		if fc.probe.peerGone() {
			return sent, errClientLeft
		}
		if h > 0 && time.Since(sent) >= h {
			return sent, err // the response_header timeout
		}
		next := time.Now().Add(step)
		if h > 0 && next.After(sent.Add(h)) {
			next = sent.Add(h)
		}
		pc.setDeadline(next)
		waited = true
	}
	// The rest of the head: within headerTimeout of sending, exactly, when
	// it is not here yet or the deadline in place is a check's.
	if h > 0 && (waited || step < h) && !headBuffered(pc.br) {
		pc.setDeadline(sent.Add(h))
	} else if h <= 0 && !pc.readBy.IsZero() {
		pc.setDeadline(time.Time{})
	}
	return sent, nil
}

// firstWait returns the response_header timeout and the step
// awaitResponse waits in.
func (fc *fastConn) firstWait(pc *h1Conn) (h, step time.Duration) {
	t := pc.host.t
	h, step = t.headerTimeout, t.clientCheck
	if step <= 0 || h > 0 && h < step {
		step = h
	}
	return h, step
}

// headBuffered reports whether br holds a complete response head.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// appendStatusLine appends the status line net/http's server writes.
func appendStatusLine(out []byte, code int) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	if txt := http.StatusText(code); txt != "" {
		out = append(out, txt...)
	} else {
		out = append(out, "status code "...)
		out = strconv.AppendInt(out, int64(code), 10)
	}
	return append(out, "\r\n"...)
}

// respHead is what the fast path keeps of an upstream response head; the
// fields to forward are in fastConn.hdrs.
type respHead struct {
	code    int
	cl      int64 // -1: none
	chunked bool
	close   bool
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// readLine returns the next line of pc's response without its line end
// (CRLF, or LF as net/http's client accepts), valid until the next read.
func (fc *fastConn) readLine(pc *h1Conn) ([]byte, error) {
	line, err := pc.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		fc.line = append(fc.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = pc.br.ReadSlice('\n')
			fc.line = append(fc.line, line...)
		}
		line = fc.line
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

var errBadResponse = errors.New("sidecar: malformed upstream response head")

// readRespHead reads one response head: the status line and the fields,
// keeping the end-to-end ones in fc.hdrs.
func (fc *fastConn) readRespHead(pc *h1Conn, rh *respHead) error {
	line, err := fc.readLine(pc)
	if err != nil {
		return err
	}
	// "HTTP/1.x SP 3DIGIT [SP reason]"
	if len(line) < 12 || !hasPrefix(line, "HTTP/1.") || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return errBadResponse
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return errBadResponse
	}
	*rh = respHead{code: code, cl: -1, close: line[7] == '0'}
	fc.hdrs, fc.connv = fc.hdrs[:0], fc.connv[:0]
	for {
		line, err := fc.readLine(pc)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errBadResponse // obs-fold
		}
		i := 0
		for i < len(line) && tokenByte[line[i]] {
			i++
		}
		if i == 0 || i == len(line) || line[i] != ':' {
			return errBadResponse
		}
		name := line[:i]
		v := line[i+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		for _, c := range v {
			if !valueByte[c] {
				return errBadResponse
			}
		}
		switch respFieldKind(name) {
		case rfContentLength:
			n, ok := parseDigits(v)
			if !ok || rh.cl >= 0 && rh.cl != n {
				return errBadResponse
			}
			rh.cl = n
			continue
		case rfTransferEncoding:
			if !equalFold(v, "chunked") || rh.chunked {
				return errBadResponse
			}
			rh.chunked = true
			continue
		case rfConnection:
			if hasToken(v, "close") {
				rh.close = true
			}
			fc.connv = append(append(fc.connv, v...), ',')
			continue
		case rfHop, rfOwn:
			continue
		}
		fc.hdrs = append(fc.hdrs, name...)
		fc.hdrs = append(fc.hdrs, ": "...)
		fc.hdrs = append(fc.hdrs, v...)
		fc.hdrs = append(fc.hdrs, "\r\n"...)
		if len(fc.hdrs) > maxResponseHeaderBytes {
			return errBadResponse
		}
	}
}

// appendKept appends the kept fields, without those the Connection field
// named (hop-by-hop, as net/http's ReverseProxy removes them).
func (fc *fastConn) appendKept(out []byte, rh *respHead) []byte {
	if rh.chunked && rh.cl >= 0 {
		// Transfer-Encoding wins (RFC 9112 §6.3), and a connection that
		// framed a response both ways is not used again.
		rh.cl, rh.close = -1, true
	}
	if len(fc.connv) == 0 {
		return append(out, fc.hdrs...)
	}
	b := fc.hdrs
	for len(b) > 0 {
		end := 0
		for end+1 < len(b) && !(b[end] == '\r' && b[end+1] == '\n') {
			end++
		}
		line := b[:end+2]
		b = b[end+2:]
		colon := 0
		for line[colon] != ':' {
			colon++
		}
		if !hasToken(fc.connv, b2s(lower(line[:colon], fc.line[:0]))) {
			out = append(out, line...)
		}
	}
	return out
}

// lower appends the ASCII lower case of b to dst.
func lower(b, dst []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// hasToken reports whether the comma-separated list v names tok (lower
// case), ignoring case and spaces.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		e := v[:i]
		for len(e) > 0 && (e[0] == ' ' || e[0] == '\t') {
			e = e[1:]
		}
		for len(e) > 0 && (e[len(e)-1] == ' ' || e[len(e)-1] == '\t') {
			e = e[:len(e)-1]
		}
		if equalFold(e, tok) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// Response field kinds.
const (
	rfOther = iota
	rfContentLength
	rfTransferEncoding
	rfConnection
	rfHop // removed: Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, Te, Trailer, Upgrade
	rfOwn // removed: X-Credbroker-* is credbroker's alone (ownheaders.go)
)

func respFieldKind(name []byte) int {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return rfHop
		}
	case 7:
		if equalFold(name, "upgrade") || equalFold(name, "trailer") {
			return rfHop
		}
	case 10:
		if equalFold(name, "connection") {
			return rfConnection
		}
		if equalFold(name, "keep-alive") {
			return rfHop
		}
	case 14:
		if equalFold(name, "content-length") {
			return rfContentLength
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return rfHop
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return rfTransferEncoding
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return rfHop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return rfHop
		}
	}
	if len(name) > len(ownHeaderPrefix) && equalFold(name[:len(ownHeaderPrefix)], "x-credbroker-") {
		return rfOwn
	}
	return rfOther
}

// relayBody streams the response body after the head in fc.out. ok is
// false when the upstream failed midway; clientOK false when the client
// did. The last bytes stay in fc.out for the caller to write.
func (fc *fastConn) relayBody(pc *h1Conn, mode int, cl int64) (ok, clientOK bool) {
	clientOK = true
	// flush writes fc.out when it is large, or when the next upstream read
	// would block (so that a streamed response is not held back).
	flush := func(force bool) {
		if len(fc.out) == 0 || !force && len(fc.out) < 32<<10 {
			return
		}
		if clientOK {
			if _, err := fc.lc.Write(fc.out); err != nil {
				clientOK = false
			}
		}
		fc.out = fc.out[:0]
	}
	// take appends up to n body bytes (n < 0: any) to fc.out.
	take := func(n int64) (int64, error) {
		if pc.br.Buffered() == 0 {
			flush(true)
		}
		b, err := pc.br.Peek(1)
		if len(b) == 0 {
			return 0, err
		}
		avail := int64(pc.br.Buffered())
		if n >= 0 && avail > n {
			avail = n
		}
		b, _ = pc.br.Peek(int(avail))
		fc.out = append(fc.out, b...)
		fc.acc.nOut += avail
		_, _ = pc.br.Discard(int(avail))
		flush(false)
		return avail, nil
	}
	switch mode {
	case bodyNone:
		return true, true
	case bodyLength:
		for cl > 0 {
			n, err := take(cl)
			if err != nil {
				return false, clientOK
			}
			cl -= n
			if !clientOK {
				return false, false
			}
		}
		return true, clientOK
	case bodyUntilClose:
		for {
			if pc.br.Buffered() == 0 {
				flush(true)
			}
			if _, err := pc.br.Peek(1); err != nil {
				if err != io.EOF {
					return false, clientOK
				}
				fc.out = append(fc.out, "0\r\n\r\n"...)
				return true, clientOK
			}
			n := pc.br.Buffered()
			fc.out = appendChunkHeader(fc.out, int64(n))
			if _, err := take(int64(n)); err != nil {
				return false, clientOK
			}
			fc.out = append(fc.out, "\r\n"...)
			if !clientOK {
				return false, false
			}
		}
	}
	// bodyChunked: decode each chunk and encode it again (extensions are
	// dropped, trailers too, as net/http's ReverseProxy does for trailers
	// the upstream did not announce).
	for {
		if pc.br.Buffered() == 0 {
			flush(true)
		}
		line, err := fc.readLine(pc)
		if err != nil {
			return false, clientOK
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return false, clientOK
		}
		if size == 0 {
			for { // trailers
				line, err := fc.readLine(pc)
				if err != nil {
					return false, clientOK
				}
				if len(line) == 0 {
					break
				}
			}
			fc.out = append(fc.out, "0\r\n\r\n"...)
			return true, clientOK
		}
		fc.out = appendChunkHeader(fc.out, size)
		for size > 0 {
			n, err := take(size)
			if err != nil {
				return false, clientOK
			}
			size -= n
		}
		fc.out = append(fc.out, "\r\n"...)
		line, err = fc.readLine(pc)
		if err != nil || len(line) != 0 || !clientOK {
			return false, clientOK
		}
	}
}

func appendChunkHeader(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n, 16)
	return append(b, "\r\n"...)
}

// parseChunkSize reads a chunk-size line: hex digits, then optional
// extensions after ';'.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto end
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
end:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	return n, true
}

// fastQuery reports whether a route's own query is forwarded unchanged by
// net/http's ReverseProxy (no ';', no bad escape), so the fast path may
// join it as it is.
func fastQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 2
		case !queryByte[c]:
			return false
		}
	}
	return true
}
