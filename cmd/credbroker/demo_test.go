package main

import (
	"bytes"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestDemoOnce runs the whole demo (mock, sample upstream, sidecar with one
// route of each kind) on free ports and checks every sample call worked and
// that no credential reached the output.
func TestDemoOnce(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	code := run([]string{"demo", "--once", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &out, &errOut)
	g.Expect(code).To(Equal(exitOK), "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	s := out.String()
	g.Expect(s).NotTo(ContainSubstring("✗"))
	g.Expect(strings.Count(s, "✓")).To(Equal(10))
	g.Expect(s).To(ContainSubstring("credential: oauth2:OAuth2ClientCredentials:provider:-:"))
	g.Expect(s).To(ContainSubstring("credential: basic:demo-user (through the Connectivity proxy, location demo-location, virtual host erp.virtual:8000)"))
	g.Expect(s).To(ContainSubstring("client_id sb-xsuaa-secret!t1, tenant subscriber1"))
	g.Expect(s).To(ContainSubstring("client certificate: CN=demo-app"))
	g.Expect(s).To(ContainSubstring("OAuth 1.0a: signature valid for consumer key demo-connector"))
	g.Expect(s).To(ContainSubstring("admin /readyz                      200 ready"))
	g.Expect(s).To(ContainSubstring("Try it:"))
	all := s + errOut.String()
	for _, secret := range []string{"eyJ", "PRIVATE KEY", "token=", "client_secret", "oauth_signature="} {
		g.Expect(all).NotTo(ContainSubstring(secret), "the demo never prints a credential")
	}
}
