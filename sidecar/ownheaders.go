package sidecar

import (
	"io"
	"net/http"
	"strings"
)

// An upstream's answer must not carry what the app reads as credbroker's
// own word: X-Credbroker-Error (the refusal reason) and every other
// X-Credbroker-* field are credbroker's alone. They are removed from the
// upstream's response head and trailers on every path (here for net/http's
// path, respFieldKind for the fast path) before the proxy adds its own.

// ownHeaderPrefix is the canonical prefix of credbroker's response fields.
const ownHeaderPrefix = "X-Credbroker-"

// isOwnHeader reports whether a field name (any case) is one of
// credbroker's.
func isOwnHeader(name string) bool {
	return len(name) > len(ownHeaderPrefix) && strings.EqualFold(name[:len(ownHeaderPrefix)], ownHeaderPrefix)
}

// deleteOwnHeaders removes credbroker's fields from h.
func deleteOwnHeaders(h http.Header) {
	for k := range h {
		if isOwnHeader(k) {
			delete(h, k)
		}
	}
}

// stripOwnHeaders is the transport of a route's ReverseProxy below
// everything that sets HeaderError on an upstream's answer (reauth.go): it
// removes the upstream's X-Credbroker-* fields from the head, and from the
// trailers once the body is read.
type stripOwnHeaders struct{ next http.RoundTripper }

func (s stripOwnHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	deleteOwnHeaders(resp.Header)
	deleteOwnHeaders(resp.Trailer)
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil && resp.Body != http.NoBody {
		// 101: the ReverseProxy needs the body's io.ReadWriteCloser.
		resp.Body = &ownTrailerBody{ReadCloser: resp.Body, resp: resp}
	}
	return resp, nil
}

// ownTrailerBody removes credbroker's fields from the trailers the
// transport fills in when the body ends (announced or not).
type ownTrailerBody struct {
	io.ReadCloser
	resp *http.Response
}

func (b *ownTrailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		deleteOwnHeaders(b.resp.Trailer)
	}
	return n, err
}
