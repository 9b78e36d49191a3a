package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// ConnectionFile is the file name of the connection info beside tls.crt.
const ConnectionFile = "connection.json"

// ConnectionInfo is what credbroker remembers about a connection, stored as
// connection.json next to the certificate. It holds no secret: never the
// one-time token, nor the runtime connector's token URL.
type ConnectionInfo struct {
	Version int `json:"version"`
	// ConnectorURL is scheme://host[:port] of the connector that was paired with.
	ConnectorURL    string         `json:"connector_url"`
	InfoURL         string         `json:"info_url"`
	CertificatesURL string         `json:"certificates_url,omitempty"`
	Identity        ClientIdentity `json:"identity"`
	MetadataURL     string         `json:"metadata_url,omitempty"`
	EventsURL       string         `json:"events_url,omitempty"`
	EventsInfoURL   string         `json:"events_info_url,omitempty"`
	RenewCertURL    string         `json:"renew_cert_url,omitempty"`
	RevokeCertURL   string         `json:"revoke_cert_url,omitempty"`
	// Subject is the certificate subject in the connector's order.
	Subject      string `json:"subject"`
	KeyAlgorithm string `json:"key_algorithm,omitempty"`
	Serial       string `json:"serial,omitempty"` // decimal; not an identity (the Kyma connector issues every certificate with serial 2)
	// SHA256 is the fingerprint of the certificate (hex of the SHA-256 of
	// its DER): what identifies it, and what the connector revokes by.
	SHA256    string    `json:"sha256,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	UpdatedAt time.Time `json:"updated_at"`
}

// connectionVersion is the current format version.
const connectionVersion = 1

// NewConnectionInfo builds the connection info of a pairing and, when info
// is not nil, the management info read right after it.
func NewConnectionInfo(p *Pairing, info *ManagementInfo, now time.Time) ConnectionInfo {
	ci := ConnectionInfo{
		Version:         connectionVersion,
		InfoURL:         p.API.InfoURL,
		CertificatesURL: p.API.CertificatesURL,
		MetadataURL:     p.API.MetadataURL,
		EventsURL:       p.API.EventsURL,
		EventsInfoURL:   p.API.EventsInfoURL,
		KeyAlgorithm:    p.KeyAlgorithm,
	}
	if u, err := url.Parse(p.TokenURL); err == nil {
		ci.ConnectorURL = (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	}
	ci.SetCertificate(p.Leaf(), now)
	ci.Subject = p.Subject.String()
	if info != nil {
		ci.ApplyInfo(*info, now)
	}
	return ci
}

// ApplyInfo takes identity and URLs from management info (the runtime token
// URL is not kept). It reports whether anything changed.
func (ci *ConnectionInfo) ApplyInfo(info ManagementInfo, now time.Time) bool {
	before := *ci
	ci.Identity = info.ClientIdentity
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&ci.MetadataURL, info.URLs.MetadataURL)
	set(&ci.EventsURL, info.URLs.EventsURL)
	set(&ci.EventsInfoURL, info.URLs.EventsInfoURL)
	set(&ci.RenewCertURL, info.URLs.RenewCertURL)
	set(&ci.RevokeCertURL, info.URLs.RevokeCertURL)
	before.UpdatedAt = ci.UpdatedAt
	changed := before != *ci
	if changed {
		ci.UpdatedAt = now.UTC()
	}
	return changed
}

// Fingerprint returns the SHA-256 fingerprint of a certificate: lower-case
// hex of the SHA-256 of its DER, as the connector identifies certificates.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// SetCertificate records the subject, serial, fingerprint and validity of leaf.
func (ci *ConnectionInfo) SetCertificate(leaf *x509.Certificate, now time.Time) {
	if s, err := SubjectOf(leaf); err == nil {
		ci.Subject = s.String()
	}
	ci.Serial = leaf.SerialNumber.String()
	ci.SHA256 = Fingerprint(leaf)
	ci.NotBefore = leaf.NotBefore.UTC()
	ci.NotAfter = leaf.NotAfter.UTC()
	ci.UpdatedAt = now.UTC()
}

// ManagementInfo returns the known info (for InitialInfo of a heartbeat).
func (ci ConnectionInfo) ManagementInfo() ManagementInfo {
	return ManagementInfo{
		ClientIdentity: ci.Identity,
		URLs: ManagementURLs{
			MetadataURL: ci.MetadataURL, EventsURL: ci.EventsURL, EventsInfoURL: ci.EventsInfoURL,
			RenewCertURL: ci.RenewCertURL, RevokeCertURL: ci.RevokeCertURL,
		},
	}
}

// Marshal returns indented JSON with a final newline.
func (ci ConnectionInfo) Marshal() ([]byte, error) {
	if ci.Version == 0 {
		ci.Version = connectionVersion
	}
	b, err := json.MarshalIndent(ci, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("connector: encoding connection info: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseConnectionInfo decodes connection.json; source names it in errors.
func ParseConnectionInfo(data []byte, source string) (ConnectionInfo, error) {
	var ci ConnectionInfo
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ci); err != nil {
		return ConnectionInfo{}, fmt.Errorf("%w: %s: not valid connection JSON: %v", ErrInvalidInput, source, err)
	}
	if ci.Version > connectionVersion {
		return ConnectionInfo{}, fmt.Errorf("%w: %s: version %d is newer than this credbroker understands (%d)", ErrInvalidInput, source, ci.Version, connectionVersion)
	}
	if _, err := checkURL("info_url", ci.InfoURL); err != nil {
		return ConnectionInfo{}, fmt.Errorf("%s: %w", source, err)
	}
	for field, v := range map[string]string{"renew_cert_url": ci.RenewCertURL, "revoke_cert_url": ci.RevokeCertURL, "events_url": ci.EventsURL, "metadata_url": ci.MetadataURL} {
		if v == "" {
			continue
		}
		if _, err := checkURL(field, v); err != nil {
			return ConnectionInfo{}, fmt.Errorf("%s: %w", source, err)
		}
	}
	return ci, nil
}

// LoadConnectionInfo reads and decodes a connection.json file.
func LoadConnectionInfo(path string) (ConnectionInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ConnectionInfo{}, fmt.Errorf("connector: %w", err)
	}
	return ParseConnectionInfo(data, path)
}

// Connection is the outcome of Connect.
type Connection struct {
	Pairing *Pairing
	// Info is nil when the management info call failed (InfoErr).
	Info    *ManagementInfo
	InfoErr error
	ConnectionInfo
}

// Connect pairs with a one-time token URL and then reads the management info
// with the new certificate. When pairing succeeded but the info call failed,
// the Connection is still returned (the token is used up: keep the
// certificate) with InfoErr set and a nil error.
func (c *Client) Connect(ctx context.Context, tokenURL string) (*Connection, error) {
	p, err := c.Pair(ctx, tokenURL)
	if err != nil {
		return nil, err
	}
	conn := &Connection{Pairing: p}
	if p.API.InfoURL != "" {
		cert := p.TLSCertificate()
		hc := c.httpClient(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil })
		defer hc.CloseIdleConnections()
		var info ManagementInfo
		if err := c.do(ctx, call{op: opInfo, method: http.MethodGet, url: p.API.InfoURL, client: hc, wantCode: []int{200}}, &info); err != nil {
			conn.InfoErr = err
		} else {
			conn.Info = &info
		}
	} else {
		conn.InfoErr = fmt.Errorf("%w: the connector announced no api.infoUrl", ErrInvalidResponse)
	}
	conn.ConnectionInfo = NewConnectionInfo(p, conn.Info, c.now())
	return conn, nil
}
