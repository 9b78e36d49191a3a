package connector

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

// Connector URLs carry one-time tokens, CSRs and mTLS calls: plain http is
// refused except to loopback (local tests), whether the URL comes from the
// user, from connection.json or from the connector's own answers.
func TestPlainHTTPConnectorURLsAreRefusedBeyondLoopback(t *testing.T) {
	g := NewWithT(t)
	for _, raw := range []string{"http://connector.example.com/v1/info?token=T", "http://10.0.0.5:8080/renew"} {
		_, err := checkURL("csrUrl", raw)
		g.Expect(errors.Is(err, ErrInvalidInput)).To(BeTrue(), raw)
		g.Expect(err).To(MatchError(ContainSubstring("in clear")))
		g.Expect(err.Error()).NotTo(ContainSubstring("token=T"), "the one-time token stays out of the error")
	}
	for _, raw := range []string{"https://connector.example.com/x", "http://127.0.0.1:8080/x", "http://connector.localhost:9/x"} {
		_, err := checkURL("csrUrl", raw)
		g.Expect(err).NotTo(HaveOccurred(), raw)
	}
	_, err := ParseConnectionInfo([]byte(`{"version":1,"info_url":"https://c.example.com/info","renew_cert_url":"http://gw.example.com/renew"}`), "connection.json")
	g.Expect(err).To(MatchError(ContainSubstring("renew_cert_url")))
	g.Expect(err).To(MatchError(ContainSubstring("in clear")))
}
