package sidecar

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a listener refuses a connection or a request head itself (in
// HeaderError of the response it writes before closing).
const (
	ReasonConnectionLimit = "connection-limit"
	ReasonObsFold         = "obs-fold"
	ReasonBareLF          = "bare-lf"
	ReasonBareCR          = "bare-cr"
	ReasonBadContentLen   = "bad-content-length"
	ReasonBadRequestBody  = "bad-request-body"
	// ReasonHeaderTimeout: a request head was not complete within
	// client_header_timeout of its first byte (408).
	ReasonHeaderTimeout = "header-timeout"
)

// limitListener caps the open connections of a listener. At the cap a new
// connection is accepted and closed at once (on plain-HTTP listeners after
// a 503 with reason connection-limit): the kernel's accept queue never
// fills with connections nobody serves, so the first connection after the
// flood is served at once, and each refusal is counted. Connections already
// open are not touched. Safe for concurrent use.
type limitListener struct {
	net.Listener
	max     atomic.Int64
	open    atomic.Int64
	refused prometheus.Counter
	gauge   prometheus.Gauge
	// headRefused counts strictConn's 400s by reason (nil: not counted).
	headRefused *prometheus.CounterVec
	name        string
	// refusal is written to a refused connection (nil: none, e.g. under TLS).
	refusal []byte
	// strict checks request heads (obs-fold, bare LF) on plain-HTTP
	// listeners.
	strict bool
	// headerTimeout bounds each request head strictConn reads, from its
	// first byte to its end (client_header_timeout; zero: no bound).
	headerTimeout time.Duration
}

func newLimitListener(ln net.Listener, limit int, m *Metrics, name string, plainHTTP bool) *limitListener {
	l := &limitListener{
		Listener: ln,
		refused:  m.connsRefused.WithLabelValues(name),
		gauge:    m.connsOpen.WithLabelValues(name),
		strict:   plainHTTP,
		name:     name,

		headRefused: m.headRefused,
	}
	l.max.Store(int64(limit))
	if plainHTTP {
		l.refusal = headResponse(503, "Service Unavailable", ReasonConnectionLimit, "too many open connections (max_connections."+name+")")
	}
	return l
}

// SetLimit changes the cap (a reload); connections above it stay open.
func (l *limitListener) SetLimit(n int) { l.max.Store(int64(n)) }

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max.Load() {
			l.open.Add(-1)
			l.refused.Inc()
			if l.refusal != nil {
				// A fresh connection's send buffer is empty: the write does
				// not block; the deadline bounds it anyway.
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = c.Write(l.refusal)
			}
			_ = c.Close()
			continue
		}
		l.gauge.Inc()
		lc := &limitConn{Conn: c, l: l}
		if l.strict {
			return &strictConn{limitConn: lc, headerTimeout: l.headerTimeout}, nil
		}
		return lc, nil
	}
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.gauge.Dec()
	})
	return c.Conn.Close()
}

// headResponse is a complete response that closes the connection.
func headResponse(status int, text, reason, msg string) []byte {
	body := "credbroker: " + msg + "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\n" +
		HeaderError + ": " + reason + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// strictConn checks the request heads net/http would accept leniently:
// a line ending in a bare LF, a bare CR, and obs-fold (a header line that
// starts with a space or tab) get 400 with a reason, and the connection is
// closed, as the README promises (RFC 9112 §2.2 and §5.2 allow a server to
// reject them, and a front proxy that reads them differently is the
// request-smuggling shape). It follows the stream's framing: a head, then
// a Content-Length body (passed through unchecked), then the next head. A
// request with Transfer-Encoding has its connection closed after the
// response (closeAfterChunked), and an upgraded connection is a tunnel:
// after either it passes bytes through. The check is per byte of the head,
// with no allocation.
//
// It also bounds each head in time: a head must be complete within
// headerTimeout of its first byte, in total. net/http's ReadHeaderTimeout
// alone does not: it starts when net/http begins to read a request, which
// is after the hand-off for a head the fast loop began (so a head trickled
// into the fast loop got the whole timeout again), and after the first four
// bytes of a keep-alive connection's next head (which may come an idle
// timeout apart). Every read deadline net/http sets is held to the head's
// bound while a head is open, and a read that times out at that bound is
// answered 408 with reason header-timeout and counted.
type strictConn struct {
	*limitConn
	// pre holds bytes the fast loop read before handing the connection
	// over; they are read (and checked) first.
	pre []byte

	// headerTimeout: see limitListener.headerTimeout.
	headerTimeout time.Duration
	headOpen      bool // scan is inside a head (it has seen a byte of it)
	heads         int  // heads begun so far
	dl            sync.Mutex
	want          time.Time // the read deadline net/http asked for (dl)
	headBy        time.Time // the open head's bound; zero: none (dl; written by Read only)
	headOf        int       // the head (heads count) headBy belongs to
	clamped       bool      // the socket's read deadline is headBy (dl)
	timedOut      bool      // a head timed out (counted once)

	st        int   // stHead, stBody, stUpgrade, stPass
	remaining int64 // body bytes left (stBody)
	reqLine   bool  // the request line of this head has been seen
	lineStart bool  // the next byte starts a line
	prevCR    bool  // the previous byte was CR
	line      [64]byte
	lineLen   int  // bytes of the current line kept in line (at most 64)
	lineLong  bool // the current line was longer than line
	cl        int64
	hasCL     bool
	chunked   bool
	upgrade   bool

	bad      string // the reason of a refused head
	answered bool
	upgraded atomic.Bool // a 101 was written
}

const (
	stHead = iota
	stBody
	stUpgrade // after an upgrade request: a tunnel if a 101 was written
	stPass
)

var errBadHead = errors.New("sidecar: malformed request head")

func (c *strictConn) Write(p []byte) (int, error) {
	// A 101 response makes the rest of the connection a tunnel (read once
	// the upgrade request's head and body are through).
	if len(p) >= 13 && p[9] == '1' && p[10] == '0' && p[11] == '1' && p[12] == ' ' && string(p[:9]) == "HTTP/1.1 " && !c.upgraded.Load() {
		c.upgraded.Store(true)
	}
	return c.limitConn.Write(p)
}

func (c *strictConn) Read(p []byte) (int, error) {
	if c.bad != "" {
		return c.refuse(p)
	}
	if c.st == stPass && len(c.pre) == 0 {
		n, err := c.limitConn.Read(p)
		if err != nil && c.headTimedOut(err) {
			// A head left to net/http mid-way (a Content-Length it
			// refuses itself) still has its bound, and its answer.
			return c.refuseTimeout(p, err)
		}
		return n, err
	}
	var n int
	var err error
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
	} else {
		if c.headerTimeout > 0 && c.headLate() {
			n, err = c.readNow(p)
		} else {
			n, err = c.limitConn.Read(p)
		}
		if err != nil && c.headTimedOut(err) {
			return c.refuseTimeout(p, err)
		}
	}
	ok := c.scan(p[:n])
	if c.headerTimeout > 0 && (c.heads != c.headOf || !c.headOpen && !c.headBy.IsZero()) {
		c.updateHeadBy()
	}
	if ok < n {
		// Return the bytes before the fault; the next Read answers 400.
		n, err = ok, nil
		if n == 0 {
			return c.refuse(p)
		}
	}
	return n, err
}

// refuse writes the 400 (once, and not from net/http's one-byte
// background read, which runs while a previous response may be being
// written) and returns a read error net/http closes the connection on
// without a reply of its own.
func (c *strictConn) refuse(p []byte) (int, error) {
	if !c.answered && len(p) > 1 {
		c.answered = true
		msg := map[string]string{
			ReasonObsFold:       "a header line starts with a space or tab (obs-fold); refused",
			ReasonBareLF:        "a line of the request head ends in a bare LF; lines end in CRLF",
			ReasonBareCR:        "a bare CR in the request head; refused",
			ReasonBadContentLen: "a Content-Length header that cannot be read; refused",
		}[c.bad]
		if c.l != nil && c.l.headRefused != nil {
			c.l.headRefused.WithLabelValues(c.l.name, c.bad).Inc()
		}
		_ = c.limitConn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.limitConn.Write(headResponse(400, "Bad Request", c.bad, msg))
		// Nothing more goes out: net/http may still see a partial line
		// and try an answer of its own.
		_ = c.limitConn.CloseWrite()
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: errBadHead}
}

// seedHead bounds the first head read (the one the fast loop began): by is
// headerTimeout from its first byte.
func (c *strictConn) seedHead(by time.Time) {
	c.headBy, c.headOf = by, 1
}

// updateHeadBy follows scan: a head began (bound from now), or none is
// open (no bound).
func (c *strictConn) updateHeadBy() {
	c.dl.Lock()
	defer c.dl.Unlock()
	if c.headOpen {
		if c.heads != c.headOf {
			c.headBy, c.headOf = time.Now().Add(c.headerTimeout), c.heads
		}
	} else {
		c.headBy, c.headOf = time.Time{}, c.heads
	}
	c.applyDeadline()
}

// applyDeadline sets the socket's read deadline: the one net/http asked
// for, held to the open head's bound (dl held).
func (c *strictConn) applyDeadline() {
	t := c.want
	c.clamped = !c.headBy.IsZero() && (t.IsZero() || t.After(c.headBy))
	if c.clamped {
		t = c.headBy
	}
	_ = c.limitConn.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline, held to the open head's bound.
func (c *strictConn) SetReadDeadline(t time.Time) error {
	if c.headerTimeout <= 0 {
		return c.limitConn.SetReadDeadline(t)
	}
	c.dl.Lock()
	defer c.dl.Unlock()
	c.want = t
	c.applyDeadline()
	return nil
}

// SetDeadline sets both deadlines, the read one held to the open head's
// bound.
func (c *strictConn) SetDeadline(t time.Time) error {
	if err := c.limitConn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// headTimedOut reports whether err is the open head's bound passing (not a
// deadline of net/http's own, such as the one that stops its background
// read).
func (c *strictConn) headTimedOut(err error) bool {
	if c.headerTimeout <= 0 || !isTimeout(err) {
		return false
	}
	c.dl.Lock()
	defer c.dl.Unlock()
	return c.clamped && !c.headBy.IsZero() && !time.Now().Before(c.headBy)
}

// headLate reports whether the open head's bound passed before this read:
// net/http was busy elsewhere (a pipelined head whose first byte came while
// the request before it was served, or a head the fast loop handed over at
// its bound), not waiting for the client.
func (c *strictConn) headLate() bool {
	if c.headBy.IsZero() {
		return false
	}
	c.dl.Lock()
	defer c.dl.Unlock()
	return c.clamped && !time.Now().Before(c.headBy)
}

// readNow reads what has already arrived, without waiting: past its bound,
// a head gets the bytes the client sent in time (a client is not refused
// for the time net/http took to come back to its head), and no wait for
// more; nothing there is the head's timeout. The socket's deadline has
// passed, which fails every Read before it reads: the read goes through
// Control, as the fast loop's liveness peek does (net/http reads a
// connection from one goroutine at a time).
func (c *strictConn) readNow(p []byte) (int, error) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	rc := rawConnOf(c.limitConn.Conn)
	if rc == nil {
		return 0, timeout
	}
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) { n, rerr = rawRead(int(fd), p) }); err != nil {
		return 0, err
	}
	if rerr == errWait {
		return 0, timeout
	}
	return n, rerr
}

// refuseTimeout answers a head that timed out: 408 with reason
// header-timeout (not from net/http's one-byte background read, which runs
// while a previous response may be being written: that read's error alone
// makes net/http close the connection once the response is out), counted
// once; the read error is returned, on which net/http closes the
// connection without a reply of its own.
func (c *strictConn) refuseTimeout(p []byte, err error) (int, error) {
	if !c.timedOut {
		c.timedOut = true
		if c.l != nil && c.l.headRefused != nil {
			c.l.headRefused.WithLabelValues(c.l.name, ReasonHeaderTimeout).Inc()
		}
	}
	if !c.answered && len(p) > 1 {
		c.answered = true
		_ = c.limitConn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.limitConn.Write(headResponse(408, "Request Timeout", ReasonHeaderTimeout,
			"the request head was not complete within client_header_timeout of its first byte"))
		_ = c.limitConn.CloseWrite()
	}
	return 0, err
}

// scan advances the state over b and returns how many bytes of b are
// acceptable (len(b) unless a fault was found).
func (c *strictConn) scan(b []byte) int {
	for i := 0; i < len(b); {
		switch c.st {
		case stPass:
			return len(b)
		case stBody:
			k := int64(len(b) - i)
			if k > c.remaining {
				k = c.remaining
			}
			c.remaining -= k
			i += int(k)
			if c.remaining == 0 {
				c.afterMessage()
			}
			continue
		case stUpgrade:
			if c.upgraded.Load() {
				c.st = stPass
				return len(b)
			}
			c.startHead()
			continue
		}
		// stHead
		ch := b[i]
		if !c.headOpen {
			c.headOpen = true
			c.heads++
		}
		if c.prevCR && ch != '\n' {
			c.bad = ReasonBareCR
			return i
		}
		switch ch {
		case '\r':
			c.prevCR = true
			i++
			continue
		case '\n':
			if !c.prevCR {
				c.bad = ReasonBareLF
				return i
			}
			c.prevCR = false
			i++
			if !c.endLine() {
				return i - 1
			}
			continue
		}
		if c.lineStart && c.reqLine && (ch == ' ' || ch == '\t') && c.lineLen == 0 {
			c.bad = ReasonObsFold
			return i
		}
		c.lineStart = false
		if c.lineLen < len(c.line) {
			c.line[c.lineLen] = ch
			c.lineLen++
		} else {
			c.lineLong = true
		}
		i++
	}
	return len(b)
}

// afterMessage follows a complete request: the next head, or a tunnel
// after an upgrade request answered 101.
func (c *strictConn) afterMessage() {
	if c.upgrade {
		c.st = stUpgrade
		return
	}
	c.startHead()
}

func (c *strictConn) startHead() {
	c.st, c.headOpen = stHead, false
	c.reqLine, c.lineStart, c.prevCR = false, true, false
	c.lineLen, c.lineLong = 0, false
	c.cl, c.hasCL, c.chunked, c.upgrade = 0, false, false, false
}

// endLine handles the end of one head line; false on a fault.
func (c *strictConn) endLine() bool {
	line := c.line[:c.lineLen]
	long := c.lineLong
	c.lineLen, c.lineLong, c.lineStart = 0, false, true
	if len(line) == 0 && !long {
		if !c.reqLine {
			// Empty lines before a request line are ignored (net/http
			// skips those after a POST's body, which old clients send):
			// they begin no head, nor its bound.
			c.headOpen = false
			return true
		}
		// The end of the head.
		c.headOpen = false
		switch {
		case c.chunked:
			c.st = stPass // the connection closes after the response
		case c.cl > 0:
			c.st, c.remaining = stBody, c.cl
		default:
			c.afterMessage()
		}
		return true
	}
	if !c.reqLine {
		c.reqLine = true
		return true
	}
	switch {
	case hasFieldName(line, "content-length"):
		v, ok := fieldValue(line, len("content-length"))
		if long || !ok {
			c.bad = ReasonBadContentLen
			return false
		}
		n, ok := parseDigits(v)
		if !ok || (c.hasCL && n != c.cl) {
			// net/http refuses these itself; let it (the head's bound
			// stays: nothing more is scanned).
			c.st = stPass
			return true
		}
		c.cl, c.hasCL = n, true
	case hasFieldName(line, "transfer-encoding"):
		c.chunked = true
	case hasFieldName(line, "upgrade"):
		c.upgrade = true
	}
	return true
}

// hasFieldName reports whether line starts with name (ASCII
// case-insensitive) followed by a colon.
func hasFieldName(line []byte, name string) bool {
	if len(line) <= len(name) || line[len(name)] != ':' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := line[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// fieldValue returns the value after "name:" without surrounding
// spaces and tabs; ok is false when it is empty.
func fieldValue(line []byte, nameLen int) ([]byte, bool) {
	v := line[nameLen+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v, len(v) > 0
}

// parseDigits parses a Content-Length value: decimal digits only, at most
// 1<<63-1, leading zeros allowed — what net/http accepts
// (strconv.ParseUint(v, 10, 63)). A value net/http accepts and this did
// not would end the scan with the head (stPass): no check of the heads
// after it, and the head's bound left on the connection.
func parseDigits(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, d := range v {
		if d < '0' || d > '9' {
			return 0, false
		}
		x := int64(d - '0')
		if n > (math.MaxInt64-x)/10 {
			return 0, false
		}
		n = n*10 + x
	}
	return n, true
}

// CloseWrite half-closes the connection when the transport can (net/http
// uses it to let a client read an error response before the close).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var _ io.Reader = (*strictConn)(nil)
