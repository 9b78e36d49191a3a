package sidecar

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

// A route that adds a credential to an http:// upstream is refused unless
// the upstream is loopback or the route sets allow_plain_http; every such
// route is listed by PlainHTTPRoutes (the startup log names them).
func TestPlainHTTPUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		route   string
		refused bool
		listed  bool
	}{
		{name: "bearer to a remote http upstream", route: `{name: r, upstream: "http://orders.example.com", auth: {type: bearer, binding: b}}`, refused: true},
		{name: "oauth1 to a remote http upstream", route: `{name: r, upstream: "http://10.1.2.3:8080", auth: {type: oauth1, key_file: /k, secret_file: /s}}`, refused: true},
		{name: "bearer to a remote http upstream, allowed", route: `{name: r, upstream: "http://connectivity-proxy.kyma-system:20003", allow_plain_http: true, auth: {type: bearer, binding: b}}`, listed: true},
		{name: "bearer to loopback", route: `{name: r, upstream: "http://127.0.0.1:8080", auth: {type: bearer, binding: b}}`, listed: true},
		{name: "bearer to a .localhost name", route: `{name: r, upstream: "http://app.localhost:8080", auth: {type: bearer, binding: b}}`, listed: true},
		{name: "no credential", route: `{name: r, upstream: "http://plain.example.com", auth: {type: none}}`},
		{name: "https", route: `{name: r, upstream: "https://orders.example.com", auth: {type: bearer, binding: b}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg, err := ParseConfig([]byte("routes: ["+tc.route+"]\n"), "config t.yaml")
			if tc.refused {
				g.Expect(errors.Is(err, ErrPlainHTTP)).To(BeTrue(), "%v", err)
				g.Expect(err).To(MatchError(ContainSubstring("routes[0].upstream")))
				g.Expect(err).To(MatchError(ContainSubstring("allow_plain_http")))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			if tc.listed {
				g.Expect(cfg.PlainHTTPRoutes()).To(Equal([]string{"r"}))
			} else {
				g.Expect(cfg.PlainHTTPRoutes()).To(BeEmpty())
			}
		})
	}
}
