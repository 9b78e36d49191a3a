package mockauth

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestConformsToTheKymaConnector has one case per row of the conformance
// table in doc.go: what the Kyma application connector-service (2.2.0)
// does, which the mock does by default. The credbroker extensions are
// checked at the end, each behind its option.
func TestConformsToTheKymaConnector(t *testing.T) {
	clock := newFakeClock()
	clock.Advance(700 * time.Millisecond) // not on a whole second
	srv := startMock(t, Options{Now: clock.Now, CertTTL: time.Hour})
	info := srv.Info()
	c := srv.Client()
	a := pair(t, srv, mustToken(t, srv, "app1"), true)
	b := pair(t, srv, mustToken(t, srv, "app1"), true)
	renewURL := info.GatewayURL + pathRenewals
	revokeURL := info.GatewayURL + pathRevocations

	// csrURL redeems a fresh token and returns its csrUrl.
	csrURL := func(t *testing.T) string {
		t.Helper()
		res := getJSON(t, c, mustToken(t, srv, "app1"))
		NewWithT(t).Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
		return res.body["csrUrl"].(string)
	}

	rows := []struct {
		topic string
		check func(t *testing.T, g Gomega)
	}{
		{"EC CSR: 500, the RSA CA cannot use the CSR's ECDSA signature algorithm", func(t *testing.T, g Gomega) {
			res := postJSON(t, c, csrURL(t), csrJSON(t, newKey(t, false), wantSubject("Organization", "app1")))
			g.Expect(res.status).To(Equal(http.StatusInternalServerError))
			g.Expect(res.body).To(And(HaveKeyWithValue("code", BeNumerically("==", 500)),
				HaveKeyWithValue("error", "Error while creating certificate: x509: requested SignatureAlgorithm does not match private key type")))
		}},
		{"management info and metadata with a revoked certificate: 200, revocation blocks only renewal", func(t *testing.T, g Gomega) {
			p := pair(t, srv, mustToken(t, srv, "app1"), true)
			g.Expect(srv.RevokeSHA256(fingerprint(p.leaf.Raw))).To(Succeed())
			mtls := srv.Client(p.cert)
			g.Expect(getJSON(t, mtls, p.infoURL).status).To(Equal(http.StatusOK))
			g.Expect(postJSON(t, mtls, p.metaURL, []byte(`{"name":"x"}`)).status).To(Equal(http.StatusOK))
			g.Expect(postJSON(t, mtls, renewURL, csrJSON(t, newKey(t, true), p.subject)).status).To(Equal(http.StatusForbidden))
		}},
		{"infoUrl, renewCertUrl and revokeCertUrl: on a separate mTLS gateway host", func(t *testing.T, g Gomega) {
			res := getJSON(t, srv.Client(a.cert), a.infoURL)
			g.Expect(res.status).To(Equal(http.StatusOK))
			urls := res.body["urls"].(map[string]any)
			gw, _ := url.Parse(info.GatewayURL)
			conn, _ := url.Parse(info.ConnectorURL)
			g.Expect(gw.Host).NotTo(Equal(conn.Host))
			for _, u := range []string{a.infoURL, urls["renewCertUrl"].(string), urls["revokeCertUrl"].(string)} {
				p, err := url.Parse(u)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(p.Host).To(Equal(gw.Host), u)
			}
			g.Expect(getJSON(t, srv.Client(a.cert), info.ConnectorURL+pathMgmtInfo).status).To(Equal(http.StatusNotFound), "not on the connector host")
		}},
		{"management info without a client certificate: the TLS alert certificate required, no HTTP answer", func(t *testing.T, g Gomega) {
			resp, err := c.Get(a.infoURL)
			if err == nil {
				resp.Body.Close()
			}
			g.Expect(err).To(MatchError(ContainSubstring("tls: certificate required")))
		}},
		{"standalone clientIdentity: the application only", func(t *testing.T, g Gomega) {
			res := getJSON(t, srv.Client(a.cert), a.infoURL)
			g.Expect(res.body["clientIdentity"]).To(Equal(map[string]any{"application": "app1"}))
		}},
		{"serial: constant (2)", func(t *testing.T, g Gomega) {
			g.Expect(a.leaf.SerialNumber.Int64()).To(Equal(int64(2)))
			g.Expect(b.leaf.SerialNumber).To(Equal(a.leaf.SerialNumber))
		}},
		{"notBefore: the second of issue", func(t *testing.T, g Gomega) {
			g.Expect(a.leaf.NotBefore).To(Equal(clock.Now().Truncate(time.Second)))
		}},
		{"revocation identifies the certificate by the SHA-256 of its DER", func(t *testing.T, g Gomega) {
			// Revoke b through the protocol: a, with the same serial, can
			// still renew.
			req, _ := http.NewRequest(http.MethodPost, revokeURL, nil)
			g.Expect(do(t, srv.Client(b.cert), req).status).To(Equal(http.StatusCreated))
			g.Expect(postJSON(t, srv.Client(b.cert), renewURL, csrJSON(t, newKey(t, true), b.subject)).status).To(Equal(http.StatusForbidden))
			g.Expect(postJSON(t, srv.Client(a.cert), renewURL, csrJSON(t, newKey(t, true), a.subject)).status).To(Equal(http.StatusCreated))
			var revoked []string
			for _, ic := range srv.Issued() {
				if ic.Revoked {
					revoked = append(revoked, ic.SHA256)
				}
			}
			g.Expect(revoked).To(ContainElement(fingerprint(b.leaf.Raw)))
			g.Expect(revoked).NotTo(ContainElement(fingerprint(a.leaf.Raw)))
		}},
		{"token reused or missing: 403 Invalid token. / Token not provided.", func(t *testing.T, g Gomega) {
			u := mustToken(t, srv, "app1")
			g.Expect(getJSON(t, c, u).status).To(Equal(http.StatusOK))
			res := getJSON(t, c, u)
			g.Expect(res.status).To(Equal(http.StatusForbidden))
			g.Expect(res.body).To(Equal(map[string]any{"code": float64(403), "error": "Invalid token."}))
			res = getJSON(t, c, info.ConnectorURL+pathSigningInfo)
			g.Expect(res.status).To(Equal(http.StatusForbidden))
			g.Expect(res.body).To(Equal(map[string]any{"code": float64(403), "error": "Token not provided."}))
		}},
		{"CSR subject mismatch: 400, one message per attribute", func(t *testing.T, g Gomega) {
			u := csrURL(t)
			key := newKey(t, true)
			noC := wantSubject("Organization", "app1")
			noC.Country = nil
			for _, tc := range []struct {
				csr  []byte
				want string
			}{
				{csrJSON(t, key, wantSubject("Organization", "app2")), "CSR: Invalid common name provided."},
				{csrJSON(t, key, wantSubject("Runtime", "app1")), "CSR: Invalid organization provided."},
				{csrJSON(t, key, noC), "CSR: No country provided."},
			} {
				res := postJSON(t, c, u, tc.csr)
				g.Expect(res.status).To(Equal(http.StatusBadRequest))
				g.Expect(res.body).To(HaveKeyWithValue("error", tc.want))
			}
		}},
		{"non-JSON body: 500", func(t *testing.T, g Gomega) {
			res := postJSON(t, c, csrURL(t), []byte("{"))
			g.Expect(res.status).To(Equal(http.StatusInternalServerError))
			g.Expect(res.body).To(HaveKeyWithValue("error", HavePrefix("Error while unmarshalling request body: ")))
		}},
		{"revocation response: 201, application/json;charset=UTF-8, empty body", func(t *testing.T, g Gomega) {
			p := pair(t, srv, mustToken(t, srv, "app1"), true)
			req, _ := http.NewRequest(http.MethodPost, revokeURL, nil)
			res := do(t, srv.Client(p.cert), req)
			g.Expect(res.status).To(Equal(http.StatusCreated))
			g.Expect(res.header.Get("Content-Type")).To(Equal("application/json;charset=UTF-8"))
			g.Expect(res.raw).To(BeEmpty())
		}},
		{"CA: RSA", func(t *testing.T, g Gomega) {
			block, _ := pem.Decode(srv.ConnectorCAPEM())
			ca, err := x509.ParseCertificate(block.Bytes)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ca.PublicKeyAlgorithm).To(Equal(x509.RSA))
			g.Expect(a.leaf.SignatureAlgorithm).To(Equal(x509.SHA256WithRSA), "the CSR's algorithm")
		}},
	}
	for _, row := range rows {
		t.Run(row.topic, func(t *testing.T) { row.check(t, NewWithT(t)) })
	}

	t.Run("extensions behind options", func(t *testing.T) {
		g := NewWithT(t)
		ext := startMock(t, Options{ECDSAConnectorCA: true, StrictRevocation: true, UniqueSerials: true})
		p := pair(t, ext, mustToken(t, ext, "app1"), false) // ECDSAConnectorCA: an ECDSA CSR is signed
		q := pair(t, ext, mustToken(t, ext, "app1"), false)
		g.Expect(p.leaf.SerialNumber).NotTo(Equal(q.leaf.SerialNumber), "UniqueSerials")
		g.Expect(ext.RevokeSHA256(fingerprint(p.leaf.Raw))).To(Succeed())
		res := getJSON(t, ext.Client(p.cert), p.infoURL)
		g.Expect(res.status).To(Equal(http.StatusForbidden), "StrictRevocation")
		g.Expect(res.body).To(HaveKeyWithValue("error", "Certificate has been revoked."))
		g.Expect(postJSON(t, ext.Client(p.cert), p.metaURL, []byte(`{"name":"x"}`)).status).To(Equal(http.StatusForbidden))

		two := startMock(t, Options{TwoPhase: true})
		r := pair(t, two, mustToken(t, two, "app1"), true)
		res = getJSON(t, two.Client(r.cert), r.infoURL)
		g.Expect(res.body).To(HaveKey("runtime"), "TwoPhase: runtime.tokenUrl")
		g.Expect(res.body["clientIdentity"]).To(HaveKeyWithValue("group", "default"))
	})
}
