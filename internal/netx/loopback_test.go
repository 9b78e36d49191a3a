package netx

import (
	"errors"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"
)

func TestLoopbackHost(t *testing.T) {
	g := NewWithT(t)
	for _, h := range []string{"localhost", "LOCALHOST.", "a.localhost", "auth.mock.localhost", "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"} {
		g.Expect(LoopbackHost(h)).To(BeTrue(), h)
	}
	for _, h := range []string{"", "example.com", "localhost.example.com", "notlocalhost", "10.0.0.1", "0.0.0.0", "::", "128.0.0.1", "fe80::1"} {
		g.Expect(LoopbackHost(h)).To(BeFalse(), h)
	}
}

func TestCheckCredentialURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		plain bool // refused as plain http
		bad   bool // refused for its scheme
	}{
		{url: "https://auth.example.com"},
		{url: "HTTPS://auth.example.com"},
		{url: "http://127.0.0.1:8080/x"},
		{url: "http://127.9.9.9/x"},
		{url: "http://[::1]:80"},
		{url: "http://p.authentication.localhost:1234"},
		{url: "http://auth.example.com", plain: true},
		{url: "http://10.0.0.7:3128", plain: true},
		{url: "http://localhost.evil.example", plain: true},
		{url: "ftp://auth.example.com", bad: true},
		{url: "ws://127.0.0.1", bad: true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			g := NewWithT(t)
			u, err := url.Parse(tc.url)
			g.Expect(err).NotTo(HaveOccurred())
			err = CheckCredentialURL(u)
			switch {
			case tc.plain:
				g.Expect(errors.Is(err, ErrPlainHTTP)).To(BeTrue(), "%v", err)
			case tc.bad:
				g.Expect(err).To(MatchError(ContainSubstring("want https://")))
			default:
				g.Expect(err).NotTo(HaveOccurred())
			}
		})
	}
}
