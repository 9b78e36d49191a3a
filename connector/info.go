package connector

import (
	"context"
	"encoding/json"
	"net/http"
)

// ClientIdentity is who the connector thinks the client is.
type ClientIdentity struct {
	Application string `json:"application,omitempty"`
	Group       string `json:"group,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
}

// ManagementURLs are the endpoints the management info announces.
// RevokeCertURL is read from "revokeCertUrl" or, for older connectors,
// "revocationCertUrl".
type ManagementURLs struct {
	MetadataURL   string `json:"metadataUrl,omitempty"`
	EventsURL     string `json:"eventsUrl,omitempty"`
	EventsInfoURL string `json:"eventsInfoUrl,omitempty"`
	RenewCertURL  string `json:"renewCertUrl,omitempty"`
	RevokeCertURL string `json:"revokeCertUrl,omitempty"`
}

// UnmarshalJSON accepts the older "revocationCertUrl" spelling.
func (u *ManagementURLs) UnmarshalJSON(b []byte) error {
	type plain ManagementURLs
	var v struct {
		plain
		Old string `json:"revocationCertUrl"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*u = ManagementURLs(v.plain)
	if u.RevokeCertURL == "" {
		u.RevokeCertURL = v.Old
	}
	return nil
}

// Runtime is the two-phase extension: a one-time token URL for the runtime
// connector. TokenURL carries a token: never log or persist it.
type Runtime struct {
	TokenURL string `json:"tokenUrl,omitempty"`
}

// String hides the token.
func (r Runtime) String() string {
	if r.TokenURL == "" {
		return "{}"
	}
	return "{tokenUrl:" + RedactURL(r.TokenURL) + "?…}"
}

// ManagementInfo is the answer of the management info endpoint.
type ManagementInfo struct {
	ClientIdentity ClientIdentity  `json:"clientIdentity"`
	URLs           ManagementURLs  `json:"urls"`
	Certificate    CertificateInfo `json:"certificate"`
	// Runtime is set when the connector hands out a token for a second,
	// runtime connector (two phases).
	Runtime *Runtime `json:"runtime,omitempty"`
}

// RuntimeTokenURL returns runtime.tokenUrl, or "".
func (m *ManagementInfo) RuntimeTokenURL() string {
	if m == nil || m.Runtime == nil {
		return ""
	}
	return m.Runtime.TokenURL
}

// Info calls the management info endpoint (api.infoUrl) over mTLS with the
// certificate of the GetClientCertificate hook. Network failures before an
// answer are retried (the call is idempotent). A refused certificate yields
// an error matching ErrUnauthorized, a revoked one ErrRevoked.
func (c *Client) Info(ctx context.Context, infoURL string) (*ManagementInfo, error) {
	var info ManagementInfo
	if err := c.do(ctx, call{op: opInfo, method: http.MethodGet, url: infoURL, client: c.mtls, wantCode: []int{200}}, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Revoke revokes the certificate presented by the GetClientCertificate hook
// (mTLS POST to urls.revokeCertUrl; the connector answers 201).
func (c *Client) Revoke(ctx context.Context, revokeURL string) error {
	return c.do(ctx, call{op: opRevoke, method: http.MethodPost, url: revokeURL, client: c.mtls, wantCode: []int{201, 200, 204}}, nil)
}
