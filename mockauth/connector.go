package mockauth

import (
	"net/http"
	"time"
)

const (
	pathSigningInfo  = "/v1/applications/signingRequests/info"
	pathCertificates = "/v1/applications/certificates"
	pathRenewals     = "/v1/applications/certificates/renewals"
	pathRevocations  = "/v1/applications/certificates/revocations"
	pathMgmtInfo     = "/v1/applications/management/info"
)

type connectorCA struct {
	ca           *authority
	organization string
	baseURL      string
}

type pairingToken struct{}

// Received is one request the gateway recorded.
type Received struct{}

func newConnectorCA(cn, org string, now time.Time) (*connectorCA, error) {
	a, err := newAuthority(cn, now)
	if err != nil {
		return nil, err
	}
	return &connectorCA{ca: a, organization: org}, nil
}

func (s *Server) connectorHandler(c *connectorCA) http.Handler {
	return http.NotFoundHandler()
}

func (s *Server) gatewayHandler() http.Handler { return http.NotFoundHandler() }

func (s *Server) adminHandler() http.Handler { return http.NotFoundHandler() }
