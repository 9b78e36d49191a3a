package sidecar

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"testing"
)

// FuzzFastHeadDifferential feeds the same raw bytes to the fast path's head
// parser and to net/http's (http.ReadRequest, what the server uses). The
// fast parser may hand any head to net/http (headSlow), but a head it takes
// (headFast) must be one net/http accepts too and reads the same way: the
// same method, target, Host, fields and values, no body, and the same end
// of the head, so that the two can never disagree about where the next
// request starts (a desync).
//
// The deliberate differences are all in the other direction and are not
// the fast parser's: heads net/http tolerates but credbroker refuses
// (strictConn in listener.go answers 400) are a line ending in a bare LF
// (bare-lf), a bare CR (bare-cr) and obs-fold, a field line starting with a
// space or tab (obs-fold). The fast parser never takes such a head; it
// hands it to net/http behind strictConn, which refuses it.
func FuzzFastHeadDifferential(f *testing.F) {
	for _, s := range []string{
		"GET /r/v1/items?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\r\n",
		"GET /r/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nGET /r/ HTTP/1.1\r\n",
		"HEAD /r HTTP/1.1\r\nhost: a\r\n\r\n",
		"OPTIONS /r/a%20b?q=%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /r/x HTTP/1.1\nHost: a\n\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\n x: folded\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\rB: c\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
		"GET /r/x?a#b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET //r/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /r/x HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET /r/x HTTP/1.1\r\nHost: a\r\nX: \xff\t v \r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var q fastReq
		verdict, n := parseFastHead(data, &q)
		if verdict != headFast {
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("head length %d of %d bytes", n, len(data))
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), len(data)+16)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("the fast parser took a head net/http refuses (%v): %q", err, data)
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.Body != http.NoBody && req.Body != nil {
			// net/http gives a bodyless request NoBody.
			if req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
				t.Fatalf("net/http sees a body the fast parser does not: %q", data)
			}
		}
		if consumed := len(data) - br.Buffered(); consumed != n {
			t.Fatalf("the head ends at %d for the fast parser and at %d for net/http: %q", n, consumed, data)
		}
		if req.Method != string(q.method) {
			t.Fatalf("method %q vs %q", q.method, req.Method)
		}
		target := string(q.path)
		if len(q.query) > 0 {
			target += "?" + string(q.query)
		}
		if req.RequestURI != target || req.URL.EscapedPath() != string(q.path) || req.URL.RawQuery != string(q.query) || req.URL.Path != string(q.path) {
			t.Fatalf("target %q vs net/http's %q (path %q raw query %q)", target, req.RequestURI, req.URL.Path, req.URL.RawQuery)
		}
		if req.Host != string(q.host) {
			t.Fatalf("host %q vs %q", q.host, req.Host)
		}
		if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Close {
			t.Fatalf("net/http reads %s close=%v", req.Proto, req.Close)
		}
		got := http.Header{}
		for _, f := range q.hdr[:q.n] {
			k := textproto.CanonicalMIMEHeaderKey(string(f.name))
			got[k] = append(got[k], string(f.val))
		}
		if len(got) != len(req.Header) {
			t.Fatalf("fields %v vs net/http's %v", got, req.Header)
		}
		for k, v := range req.Header {
			if len(got[k]) != len(v) {
				t.Fatalf("field %s: %q vs net/http's %q", k, got[k], v)
			}
			for i := range v {
				if got[k][i] != v[i] {
					t.Fatalf("field %s: %q vs net/http's %q", k, got[k], v)
				}
			}
		}
	})
}
