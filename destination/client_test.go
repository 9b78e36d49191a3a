package destination

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestFindAuthenticationTypes(t *testing.T) {
	fs, srv := newFakeService(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c, err := NewClient(srv.URL, tenantTokens, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	user := jwt(map[string]any{"iss": "https://a.example", "zid": "z1", "user_id": "u1"})
	for _, tc := range []struct {
		auth       string
		tokens     []map[string]any
		extra      map[string]any
		user       string
		wantHeader string
		wantExpiry time.Duration
		wantReason string
		wantText   string
	}{
		{auth: NoAuthentication},
		{auth: BasicAuthentication, tokens: []map[string]any{{"type": "Basic", "value": "dTpw", "http_header": map[string]any{"key": "Authorization", "value": "Basic dTpw"}}}, wantHeader: "Basic dTpw"},
		{auth: BasicAuthentication, extra: map[string]any{"User": "u", "Password": "p"}, wantHeader: "Basic dTpw"},
		{auth: OAuth2ClientCredentials, tokens: []map[string]any{bearer("cc-token", "3600")}, wantHeader: "Bearer cc-token", wantExpiry: time.Hour},
		{auth: OAuth2Password, tokens: []map[string]any{bearer("pw-token", "60")}, wantHeader: "Bearer pw-token", wantExpiry: time.Minute},
		{auth: OAuth2UserTokenExchange, user: user, tokens: []map[string]any{bearer("ux-token", "120")}, wantHeader: "Bearer ux-token", wantExpiry: 2 * time.Minute},
		{auth: OAuth2JWTBearer, user: user, tokens: []map[string]any{{"type": "bearer", "value": "jb-token", "expires_in": 30}}, wantHeader: "Bearer jb-token", wantExpiry: 30 * time.Second},
		{auth: OAuth2UserTokenExchange, wantReason: ReasonNoUserToken},
		{auth: PrincipalPropagation, user: user, extra: map[string]any{"ProxyType": "OnPremise"}},
		{auth: PrincipalPropagation, user: user, wantReason: ReasonUnsupportedType, wantText: "OnPremise"},
		{auth: "OAuth2SAMLBearerAssertion", user: user, wantReason: ReasonUnsupportedType, wantText: `"OAuth2SAMLBearerAssertion"`},
		{auth: OAuth2ClientCredentials, tokens: []map[string]any{{"type": "", "value": "", "error": "Retrieval of OAuth token failed: invalid_client"}}, wantReason: ReasonAuthTokenError, wantText: "invalid_client"},
		{auth: OAuth2ClientCredentials, wantReason: ReasonAuthTokenError, wantText: "no authTokens"},
		{auth: NoAuthentication, extra: map[string]any{"URL": ""}, wantReason: ReasonNoURL},
		{auth: NoAuthentication, extra: map[string]any{"URL": "ftp://x"}, wantReason: ReasonBadURL},
		{auth: NoAuthentication, extra: map[string]any{"ProxyType": "PrivateLink"}, wantReason: ReasonUnsupportedProxy, wantText: "PrivateLink"},
		{auth: NoAuthentication, extra: map[string]any{"URL.headers.Host": "evil"}, wantReason: ReasonBadResponse},
		{auth: OAuth2ClientCredentials, tokens: []map[string]any{{"type": "bearer", "value": "x", "http_header": map[string]any{"key": "Authorization", "value": "Bearer x\r\nX-Evil: 1"}}}, wantReason: ReasonBadResponse},
	} {
		t.Run(tc.auth+tc.wantReason, func(t *testing.T) {
			g := NewWithT(t)
			cfg := map[string]any{"Name": "d", "Type": "HTTP", "URL": "https://backend.example/api", "Authentication": tc.auth, "ProxyType": "Internet"}
			for k, v := range tc.extra {
				cfg[k] = v
			}
			fs.put("", "d", answer(cfg, tc.tokens...))
			d, err := c.Find(context.Background(), "d", "", tc.user)
			if tc.wantReason != "" {
				g.Expect(err).To(HaveOccurred())
				reason, _ := ReasonOf(err)
				g.Expect(reason).To(Equal(tc.wantReason))
				g.Expect(err.Error()).To(ContainSubstring(`"d"`))
				g.Expect(err.Error()).To(ContainSubstring(tc.wantText))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Header.Get("Authorization")).To(Equal(tc.wantHeader))
			if tc.wantExpiry > 0 {
				g.Expect(d.Expiry).To(Equal(now.Add(tc.wantExpiry)))
			} else {
				g.Expect(d.Expiry.IsZero()).To(BeTrue())
			}
			g.Expect(d.PrincipalPropagation).To(Equal(tc.auth == PrincipalPropagation))
			if tc.user != "" {
				g.Expect(fs.lastHdr.Get(UserTokenHeader)).To(Equal(tc.user))
			} else {
				g.Expect(fs.lastHdr.Get(UserTokenHeader)).To(BeEmpty())
			}
			g.Expect(fs.lastHdr.Get("Authorization")).To(Equal("Bearer tok-"))
		})
	}
}

func TestFindShapesAndStatuses(t *testing.T) {
	g := NewWithT(t)
	fs, srv := newFakeService(t)
	c, _ := NewClient(srv.URL, tenantTokens)
	fs.put("acme", "erp", answer(map[string]any{"Name": "erp", "URL": "http://erp.virtual:8000/sap", "Authentication": "NoAuthentication", "ProxyType": "OnPremise",
		"CloudConnectorLocationId": "loc1", "sap-client": "100", "URL.headers.X-Custom": "v1", "URL.queries.lang": "EN"}))
	d, err := c.Find(context.Background(), "erp", "acme", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.OnPremise()).To(BeTrue())
	g.Expect(d.LocationID).To(Equal("loc1"))
	g.Expect(d.Query.Get("sap-client")).To(Equal("100"))
	g.Expect(d.Query.Get("lang")).To(Equal("EN"))
	g.Expect(d.Header.Get("X-Custom")).To(Equal("v1"))
	g.Expect(fs.lastHdr.Get("Authorization")).To(Equal("Bearer tok-acme"))

	_, err = c.Find(context.Background(), "nope", "acme", "")
	g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring(`"nope"`))
	_, st := ReasonOf(err)
	g.Expect(st).To(Equal(http.StatusBadGateway))

	fs.setStatus(http.StatusServiceUnavailable)
	_, err = c.Find(context.Background(), "erp", "acme", "")
	r, st := ReasonOf(err)
	g.Expect(r).To(Equal(ReasonServiceUnavailable))
	g.Expect(st).To(Equal(http.StatusServiceUnavailable))
	fs.setStatus(http.StatusForbidden)
	_, err = c.Find(context.Background(), "erp", "acme", "")
	r, _ = ReasonOf(err)
	g.Expect(r).To(Equal(ReasonServiceRefused))
}

func TestFindClientCertificate(t *testing.T) {
	g := NewWithT(t)
	fs, srv := newFakeService(t)
	c, _ := NewClient(srv.URL, tenantTokens)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithCommonName("dest-client"), testpki.ClientAuth())
	p12, err := pkcs12.Modern.Encode(leaf.Key, leaf.Cert, nil, "ks-pass")
	g.Expect(err).NotTo(HaveOccurred())
	cfg := map[string]any{"Name": "c", "URL": "https://mtls.example", "Authentication": ClientCertificateAuthentication, "KeyStoreLocation": "client.p12", "KeyStorePassword": "ks-pass"}
	ans := answer(cfg)
	ans["certificates"] = []map[string]any{{"Name": "client.p12", "Type": "CERTIFICATE", "Content": base64.StdEncoding.EncodeToString(p12)}}
	fs.put("", "c", ans)
	d, err := c.Find(context.Background(), "c", "", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Certificate).NotTo(BeNil())
	g.Expect(d.Certificate.Leaf.Subject.CommonName).To(Equal("dest-client"))
	g.Expect(d.Expiry).To(Equal(leaf.Cert.NotAfter))

	cfg["KeyStorePassword"] = "wrong-pass"
	fs.put("", "c", ans)
	_, err = c.Find(context.Background(), "c", "", "")
	r, _ := ReasonOf(err)
	g.Expect(r).To(Equal(ReasonCertificate))
	g.Expect(err.Error()).NotTo(ContainSubstring("wrong-pass"))

	cfg["KeyStoreLocation"] = "client.jks"
	ans["certificates"] = []map[string]any{{"Name": "client.jks", "Content": base64.StdEncoding.EncodeToString([]byte("x"))}}
	fs.put("", "c", ans)
	_, err = c.Find(context.Background(), "c", "", "")
	g.Expect(err.Error()).To(ContainSubstring("JKS"))

	pemBundle := append(leaf.CertPEM(), leaf.KeyPEM(testpki.PKCS8)...)
	cfg["KeyStoreLocation"] = "client.pem"
	ans["certificates"] = []map[string]any{{"Name": "client.pem", "Content": base64.StdEncoding.EncodeToString(pemBundle)}}
	fs.put("", "c", ans)
	d, err = c.Find(context.Background(), "c", "", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Certificate.Leaf.Subject.CommonName).To(Equal("dest-client"))
}
