package sidecar

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// serveHandler serves a head of the fast subset that the fast path does
// not take (a refusal, the token API, a route that signs, exchanges user
// tokens or reads a tenant header, an upstream not known to speak
// HTTP/1.1) with the net/http handler, on the fast loop's connection: the
// request is read by net/http's own parser (http.ReadRequest) from the
// same bytes, so the handler sees exactly what net/http's server would
// have given it, and the connection stays on the fast loop for the next
// request. It reports whether the connection may carry another request.
func (fc *fastConn) serveHandler(s *Server, head []byte) bool {
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(head), len(head)+16))
	if err != nil || req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
		return false // cannot happen for a head parseFastHead took
	}
	req.RemoteAddr = fc.lc.RemoteAddr().String()
	req = req.WithContext(fc.handlerContext())
	w := &fastRW{fc: fc, h: http.Header{}, isHead: req.Method == http.MethodHead}
	ok := func() (ok bool) {
		defer func() {
			if recover() != nil { // http.ErrAbortHandler from the ReverseProxy: a response cut short
				ok = false
			}
		}()
		s.serveProxy(w, req)
		return true
	}()
	if !ok {
		return false
	}
	return w.finish()
}

var errClientGone = errors.New("sidecar: writing the response failed")

// fastRW is the http.ResponseWriter of serveHandler: it writes HTTP/1.1
// as net/http's server does (Date, Content-Length for a response that fits
// its buffer, chunked otherwise, interim 1xx responses at once).
type fastRW struct {
	fc     *fastConn
	h      http.Header
	code   int
	isHead bool
	wrote  bool // the final response head is in fc.out or sent
	chunk  bool
	cl     int64 // Content-Length the handler set, or -1
	n      int64 // body bytes written
	buf    []byte
	failed bool
}

func (w *fastRW) Header() http.Header { return w.h }

func (w *fastRW) WriteHeader(code int) {
	if w.wrote || w.code != 0 {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		out := appendStatusLine(w.fc.out[:0], code)
		out = appendHeader(out, w.h)
		out = append(out, "\r\n"...)
		w.fc.out = out[:0]
		if _, err := w.fc.lc.Write(out); err != nil {
			w.failed = true
		}
		return
	}
	w.code = code
}

func bodyAllowed(code int) bool {
	return code != http.StatusNoContent && code != http.StatusNotModified && (code < 100 || code > 199)
}

// writeHead puts the final head in fc.out; chunked unless the length is
// known.
func (w *fastRW) writeHead(length int64) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.wrote = true
	h := w.h
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	w.cl = -1
	if v := h.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.cl = n
		} else {
			h.Del("Content-Length")
		}
	}
	h.Del("Transfer-Encoding")
	if _, ok := h["Content-Type"]; !ok && bodyAllowed(w.code) && len(w.buf) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(w.buf)}
	}
	out := appendStatusLine(w.fc.out[:0], w.code)
	out = appendHeader(out, h)
	switch {
	case !bodyAllowed(w.code):
	case w.cl >= 0:
	case length >= 0 && !w.isHead:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, length, 10)
		out = append(out, "\r\n"...)
	case !w.isHead:
		w.chunk = true
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	w.fc.out = append(out, "\r\n"...)
}

func (w *fastRW) Write(p []byte) (int, error) {
	if w.failed {
		return 0, errClientGone
	}
	if !w.wrote {
		if len(w.buf)+len(p) <= 4<<10 {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.writeHead(-1)
		if err := w.body(w.buf); err != nil {
			return 0, err
		}
		w.buf = nil
	}
	if err := w.body(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// body appends p to the response (framed) and sends what is pending when
// it grows.
func (w *fastRW) body(p []byte) error {
	if len(p) == 0 || w.isHead || !bodyAllowed(w.code) {
		return nil
	}
	if w.cl >= 0 && w.n+int64(len(p)) > w.cl {
		w.failed = true
		return http.ErrContentLength
	}
	w.n += int64(len(p))
	if w.chunk {
		w.fc.out = appendChunkHeader(w.fc.out, int64(len(p)))
	}
	w.fc.out = append(w.fc.out, p...)
	if w.chunk {
		w.fc.out = append(w.fc.out, "\r\n"...)
	}
	if len(w.fc.out) >= 32<<10 {
		return w.send()
	}
	return nil
}

func (w *fastRW) send() error {
	if len(w.fc.out) == 0 {
		return nil
	}
	_, err := w.fc.lc.Write(w.fc.out)
	w.fc.out = w.fc.out[:0]
	if err != nil {
		w.failed = true
	}
	return err
}

// Flush sends the head and what is written so far (the ReverseProxy
// flushes streamed responses).
func (w *fastRW) Flush() {
	if !w.wrote {
		w.writeHead(-1)
		_ = w.body(w.buf)
		w.buf = nil
	}
	_ = w.send()
}

// finish completes the response; false when the connection must close.
func (w *fastRW) finish() bool {
	if w.failed {
		return false
	}
	if !w.wrote {
		w.writeHead(int64(len(w.buf)))
		_ = w.body(w.buf)
	}
	if w.chunk {
		w.fc.out = append(w.fc.out, "0\r\n\r\n"...)
	}
	if w.send() != nil {
		return false
	}
	if w.cl >= 0 && w.n != w.cl && !w.isHead && bodyAllowed(w.code) {
		return false // a body shorter than announced: the client waits for the rest
	}
	return !hasToken([]byte(w.h.Get("Connection")), "close")
}

// appendHeader appends the fields of h (names as set).
func appendHeader(out []byte, h http.Header) []byte {
	for k, vv := range h {
		for _, v := range vv {
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	return out
}
