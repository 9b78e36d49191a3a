package mockauth

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// NewPairingToken mints a one-time token for application on the central
// connector and returns its signingRequests/info URL and the token. The
// token is a secret: never log it.
func (s *Server) NewPairingToken(application string) (tokenURL, token string, err error) {
	if application == "" || strings.ContainsAny(application, "/?#,=+ ") {
		return "", "", fmt.Errorf("mockauth: invalid application name %q", application)
	}
	token = s.mintPairing(s.central, application, false)
	return s.central.baseURL + pathSigningInfo + "?token=" + token, token, nil
}

func (s *Server) mintPairing(c *connectorCA, app string, csr bool) string {
	tok := randomHex(24)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pairing[tok] = &pairingToken{application: app, conn: c, csr: csr, expires: now.Add(s.pairingTTL)}
	// Forget long-dead tokens so the map does not grow without bound.
	for k, p := range s.pairing {
		if now.Sub(p.expires) > time.Hour {
			delete(s.pairing, k)
		}
	}
	return tok
}

// checkPairing validates a one-time token without using it up. As the Kyma
// connector: 403 "Token not provided." without one, and 403 "Invalid
// token." for an unknown, used or expired one (it forgets used and expired
// tokens).
func (s *Server) checkPairing(c *connectorCA, tok string, csr bool) (*pairingToken, *connectorError) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pairing[tok]
	switch {
	case tok == "":
		return nil, connErr(http.StatusForbidden, "token_missing", "Token not provided.")
	case p == nil || p.conn != c || p.csr != csr:
		return nil, connErr(http.StatusForbidden, "token_unknown", "Invalid token.")
	case p.used:
		return nil, connErr(http.StatusForbidden, "token_used", "Invalid token.")
	case !now.Before(p.expires):
		return nil, connErr(http.StatusForbidden, "token_expired", "Invalid token.")
	}
	return p, nil
}

// usePairing consumes a token after a successful call; it fails when a
// concurrent call used it first.
func (s *Server) usePairing(p *pairingToken) *connectorError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.used {
		return connErr(http.StatusForbidden, "token_used", "Invalid token.")
	}
	p.used = true
	return nil
}

// apiURLs are the URLs of the signing-request info. As in Kyma, the
// management info (and renewal and revocation) live on the mTLS gateway
// host, not on the connector host.
func (s *Server) apiURLs(c *connectorCA, app string) map[string]string {
	gw := s.info.GatewayURL + "/" + url.PathEscape(app) + "/v1"
	return map[string]string{
		"metadataUrl":     gw + "/metadata/services",
		"eventsUrl":       gw + "/events",
		"eventsInfoUrl":   gw + "/events/subscribed",
		"infoUrl":         s.info.GatewayURL + pathMgmtInfo,
		"certificatesUrl": c.baseURL + pathCertificates,
	}
}
