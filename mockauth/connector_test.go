package mockauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func wantSubject(org, app string) pkix.Name {
	return pkix.Name{Organization: []string{org}, OrganizationalUnit: []string{"OrgUnit"}, Locality: []string{"Waldorf"},
		Province: []string{"Waldorf"}, Country: []string{"DE"}, CommonName: app}
}

// parseSubject turns "O=..,OU=..,L=..,ST=..,C=..,CN=.." into a pkix.Name as
// a client of the connector would.
func parseSubject(t *testing.T, s string) pkix.Name {
	t.Helper()
	var n pkix.Name
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			t.Fatalf("bad subject %q", s)
		}
		switch k {
		case "O":
			n.Organization = append(n.Organization, v)
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "L":
			n.Locality = append(n.Locality, v)
		case "ST":
			n.Province = append(n.Province, v)
		case "C":
			n.Country = append(n.Country, v)
		case "CN":
			n.CommonName = v
		default:
			t.Fatalf("unexpected subject attribute %q", k)
		}
	}
	return n
}

// newKey returns a fresh RSA 2048 (what the connector's RSA CA can sign)
// or ECDSA P-256 key.
func newKey(t *testing.T, rsaKey bool) crypto.Signer {
	t.Helper()
	if rsaKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrJSON(t *testing.T, key crypto.Signer, subject pkix.Name) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	return b
}

func postJSON(t *testing.T, c *http.Client, u string, body []byte) result {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, c, req)
}

type pairing struct {
	info     result
	cert     tls.Certificate
	leaf     *x509.Certificate
	caPEM    []byte
	key      crypto.Signer
	subject  pkix.Name
	infoURL  string
	eventURL string
	metaURL  string
}

// pair runs signingRequests/info and the CSR call for tokenURL.
func pair(t *testing.T, srv *Server, tokenURL string, rsaKey bool) pairing {
	t.Helper()
	g := NewWithT(t)
	c := srv.Client()
	info := getJSON(t, c, tokenURL)
	g.Expect(info.status).To(Equal(http.StatusOK), string(info.raw))
	cert := info.body["certificate"].(map[string]any)
	subject := parseSubject(t, cert["subject"].(string))
	key := newKey(t, rsaKey)
	res := postJSON(t, c, info.body["csrUrl"].(string), csrJSON(t, key, subject))
	g.Expect(res.status).To(Equal(http.StatusCreated), string(res.raw))
	return finishPairing(t, info, res, key, subject)
}

func finishPairing(t *testing.T, info, res result, key crypto.Signer, subject pkix.Name) pairing {
	t.Helper()
	g := NewWithT(t)
	dec := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(res.body[k].(string))
		g.Expect(err).NotTo(HaveOccurred(), k)
		return b
	}
	clientCrt, crt, caCrt := dec("clientCrt"), dec("crt"), dec("caCrt")
	g.Expect(crt).To(Equal(append(append([]byte{}, clientCrt...), caCrt...)))
	block, _ := pem.Decode(clientCrt)
	leaf, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(caCrt)).To(BeTrue())
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: leaf.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	g.Expect(err).NotTo(HaveOccurred())
	api := info.body["api"].(map[string]any)
	return pairing{
		info: info, leaf: leaf, caPEM: caCrt, key: key, subject: subject,
		cert:     tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
		infoURL:  api["infoUrl"].(string),
		eventURL: api["eventsUrl"].(string),
		metaURL:  api["metadataUrl"].(string),
	}
}

func TestPairingTokensAndCSR(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, CertTTL: 90 * time.Second, PairingTokenTTL: time.Minute})
	c := srv.Client()
	info := srv.Info()
	g.Expect(info.ConnectorURL).To(MatchRegexp(`^https://connector\.localhost:\d+$`))

	tokenURL, token, err := srv.NewPairingToken("app1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tokenURL).To(Equal(info.ConnectorURL + "/v1/applications/signingRequests/info?token=" + token))
	_, _, err = srv.NewPairingToken("bad/name")
	g.Expect(err).To(HaveOccurred())

	// Unknown and missing tokens.
	res := getJSON(t, c, info.ConnectorURL+"/v1/applications/signingRequests/info?token=nope")
	g.Expect(res.status).To(Equal(http.StatusForbidden))
	g.Expect(res.body).To(And(HaveKeyWithValue("code", BeNumerically("==", 403)), HaveKeyWithValue("error", "Invalid token.")))
	res = getJSON(t, c, info.ConnectorURL+"/v1/applications/signingRequests/info")
	g.Expect(res.body).To(And(HaveKeyWithValue("code", BeNumerically("==", 403)), HaveKeyWithValue("error", "Token not provided.")))

	res = getJSON(t, c, tokenURL)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body["csrUrl"]).To(HavePrefix(info.ConnectorURL + "/v1/applications/certificates?token="))
	g.Expect(res.body["csrUrl"]).NotTo(ContainSubstring(token))
	g.Expect(res.body["certificate"]).To(And(
		HaveKeyWithValue("subject", "O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"),
		HaveKeyWithValue("key-algorithm", "rsa2048"), HaveKey("extensions")))
	g.Expect(res.body["api"]).To(And(
		HaveKeyWithValue("metadataUrl", info.GatewayURL+"/app1/v1/metadata/services"),
		HaveKeyWithValue("eventsUrl", info.GatewayURL+"/app1/v1/events"),
		HaveKeyWithValue("eventsInfoUrl", info.GatewayURL+"/app1/v1/events/subscribed"),
		HaveKeyWithValue("infoUrl", info.GatewayURL+"/v1/applications/management/info"),
		HaveKeyWithValue("certificatesUrl", info.ConnectorURL+"/v1/applications/certificates")))
	infoRes := res
	csrURL := res.body["csrUrl"].(string)

	// Single use.
	res = getJSON(t, c, tokenURL)
	g.Expect(res.status).To(Equal(http.StatusForbidden))
	g.Expect(res.body["error"]).To(Equal("Invalid token."))

	// A mismatching subject (400), bad bodies and an ECDSA key (500) are
	// refused and leave the token usable.
	rsaKey := newKey(t, true)
	for name, tc := range map[string]struct {
		body   []byte
		status int
	}{
		"wrong CN":    {csrJSON(t, rsaKey, wantSubject("Organization", "app2")), 400},
		"wrong O":     {csrJSON(t, rsaKey, wantSubject("Runtime", "app1")), 400},
		"not JSON":    {[]byte("{"), 500},
		"not base64":  {[]byte(`{"csr":"%%%"}`), 500},
		"not PEM":     {[]byte(`{"csr":"` + base64.StdEncoding.EncodeToString([]byte("hello")) + `"}`), 500},
		"missing csr": {[]byte(`{}`), 500},
		"ECDSA key":   {csrJSON(t, newKey(t, false), wantSubject("Organization", "app1")), 500},
	} {
		res = postJSON(t, c, csrURL, tc.body)
		g.Expect(res.status).To(Equal(tc.status), name)
		g.Expect(res.body).To(HaveKeyWithValue("code", BeNumerically("==", tc.status)), name)
	}

	// The right CSR (RSA) is signed.
	res = postJSON(t, c, csrURL, csrJSON(t, rsaKey, wantSubject("Organization", "app1")))
	g.Expect(res.status).To(Equal(http.StatusCreated), string(res.raw))
	p := finishPairing(t, infoRes, res, rsaKey, wantSubject("Organization", "app1"))
	g.Expect(p.leaf.Subject.String()).To(Equal(wantSubject("Organization", "app1").String()))
	g.Expect(p.leaf.NotAfter).To(Equal(clock.Now().Add(90 * time.Second).Truncate(time.Second)))
	g.Expect(p.leaf.NotBefore).To(Equal(clock.Now().Truncate(time.Second)))
	g.Expect(p.caPEM).To(Equal(srv.ConnectorCAPEM()))
	g.Expect(p.leaf.ExtKeyUsage).To(ContainElement(x509.ExtKeyUsageClientAuth))

	// The csrUrl token is single use too.
	res = postJSON(t, c, csrURL, csrJSON(t, rsaKey, wantSubject("Organization", "app1")))
	g.Expect(res.status).To(Equal(http.StatusForbidden))

	// Serials are constant, fingerprints are not.
	p2 := pair(t, srv, mustToken(t, srv, "app1"), true)
	g.Expect(p2.leaf.SerialNumber).To(Equal(p.leaf.SerialNumber))
	g.Expect(fingerprint(p2.leaf.Raw)).NotTo(Equal(fingerprint(p.leaf.Raw)))

	// Expired tokens (on the mock's clock) are refused.
	expiring, _, err := srv.NewPairingToken("app1")
	g.Expect(err).NotTo(HaveOccurred())
	clock.Advance(time.Minute)
	res = getJSON(t, c, expiring)
	g.Expect(res.status).To(Equal(http.StatusForbidden))
	g.Expect(res.body["error"]).To(Equal("Invalid token."))

	st := srv.Stats()
	g.Expect(st.CSRSigned).To(Equal(2))
	g.Expect(st.PairingInfoRequests).To(Equal(6))
	g.Expect(st.Errors).To(And(HaveKeyWithValue("token_unknown", 1), HaveKeyWithValue("token_missing", 1), HaveKeyWithValue("token_used", 2),
		HaveKeyWithValue("token_expired", 1), HaveKeyWithValue("csr_subject", 2), HaveKeyWithValue("csr_invalid", 4), HaveKeyWithValue("sign_failed", 1)))
	for _, r := range st.LastRequests {
		g.Expect(r.Query).NotTo(ContainSubstring(token))
	}
	g.Expect(srv.Issued()).To(HaveLen(2))
}

func mustToken(t *testing.T, srv *Server, app string) string {
	t.Helper()
	u, _, err := srv.NewPairingToken(app)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestManagementInfoRenewalRevocation(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, CertTTL: 30 * time.Second})
	info := srv.Info()
	p := pair(t, srv, mustToken(t, srv, "app1"), true)
	mtls := srv.Client(p.cert)

	res := getJSON(t, mtls, p.infoURL)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body["clientIdentity"]).To(Equal(map[string]any{"application": "app1"}))
	urls := res.body["urls"].(map[string]any)
	g.Expect(urls).To(And(
		HaveKeyWithValue("renewCertUrl", info.GatewayURL+"/v1/applications/certificates/renewals"),
		HaveKeyWithValue("revokeCertUrl", info.GatewayURL+"/v1/applications/certificates/revocations"),
		HaveKeyWithValue("metadataUrl", p.metaURL), HaveKeyWithValue("eventsUrl", p.eventURL), HaveKey("eventsInfoUrl")))
	g.Expect(res.body["certificate"]).To(HaveKeyWithValue("subject", "O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
	g.Expect(res.body).NotTo(HaveKey("runtime"))

	// Without a client certificate the gateway refuses the handshake.
	_, err := srv.Client().Get(p.infoURL)
	g.Expect(err).To(MatchError(ContainSubstring("certificate required")))

	// Renewal: same subject, a fresh key, a new certificate; the old one stays valid.
	clock.Advance(20 * time.Second)
	newKey := newKey(t, true)
	res = postJSON(t, mtls, urls["renewCertUrl"].(string), csrJSON(t, newKey, wantSubject("Organization", "other")))
	g.Expect(res.status).To(Equal(http.StatusBadRequest))
	g.Expect(res.body["error"]).To(Equal("CSR: Invalid common name provided."))
	res = postJSON(t, mtls, urls["renewCertUrl"].(string), csrJSON(t, newKey, p.subject))
	g.Expect(res.status).To(Equal(http.StatusCreated), string(res.raw))
	renewed := finishPairing(t, p.info, res, newKey, p.subject)
	g.Expect(fingerprint(renewed.leaf.Raw)).NotTo(Equal(fingerprint(p.leaf.Raw)))
	g.Expect(renewed.leaf.NotAfter).To(Equal(clock.Now().Add(30 * time.Second).Truncate(time.Second)))
	g.Expect(getJSON(t, mtls, p.infoURL).status).To(Equal(http.StatusOK))

	// The old certificate expires on the mock's clock: the handshake fails.
	clock.Advance(15 * time.Second)
	_, err = srv.Client(p.cert).Get(p.infoURL)
	g.Expect(err).To(HaveOccurred())
	mtls2 := srv.Client(renewed.cert)
	g.Expect(getJSON(t, mtls2, p.infoURL).status).To(Equal(http.StatusOK))

	// Revocation through the connector: 201 with a JSON content type and no
	// body; renewal refuses the certificate, everything else still takes it.
	req, _ := http.NewRequest(http.MethodPost, urls["revokeCertUrl"].(string), nil)
	res = do(t, mtls2, req)
	g.Expect(res.status).To(Equal(http.StatusCreated))
	g.Expect(res.raw).To(BeEmpty())
	res = postJSON(t, mtls2, urls["renewCertUrl"].(string), csrJSON(t, newKey, p.subject))
	g.Expect(res.status).To(Equal(http.StatusForbidden))
	g.Expect(res.body["error"]).To(Equal("Certificate has been revoked."))
	g.Expect(getJSON(t, mtls2, p.infoURL).status).To(Equal(http.StatusOK))
	g.Expect(postJSON(t, mtls2, p.metaURL, []byte(`{"name":"x"}`)).status).To(Equal(http.StatusOK))
	g.Expect(postJSON(t, mtls2, p.eventURL, []byte(`{"event-type":"x"}`)).status).To(Equal(http.StatusOK))

	// Revocation through the Go API, by fingerprint.
	p3 := pair(t, srv, mustToken(t, srv, "app1"), true)
	g.Expect(srv.RevokeSHA256(fingerprint(p3.leaf.Raw))).To(Succeed())
	g.Expect(postJSON(t, srv.Client(p3.cert), urls["renewCertUrl"].(string), csrJSON(t, newKey, p.subject)).status).To(Equal(http.StatusForbidden))
	g.Expect(srv.RevokeSHA256("00")).To(MatchError(ErrUnknownCertificate))
	g.Expect(srv.Revoke("12345")).To(MatchError(ErrUnknownSerial))

	st := srv.Stats()
	g.Expect(st.Renewals).To(Equal(1))
	g.Expect(st.Revocations).To(Equal(2))
	g.Expect(st.InfoRequests).To(Equal(4))
	g.Expect(st.Errors).To(HaveKeyWithValue("cert_revoked", 2))
	issued := srv.Issued()
	g.Expect(issued).To(HaveLen(3))
	g.Expect(issued[1].Renewal).To(BeTrue())
	g.Expect(issued[1].Revoked).To(BeTrue())
	g.Expect(issued[1].SHA256).To(Equal(fingerprint(renewed.leaf.Raw)))
	g.Expect(issued[0].Revoked).To(BeFalse())
	g.Expect(issued[2].Revoked).To(BeTrue())
}

func TestGatewayRecordsMetadataAndEvents(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{})
	p := pair(t, srv, mustToken(t, srv, "app1"), true)
	other := pair(t, srv, mustToken(t, srv, "app2"), true)
	mtls := srv.Client(p.cert)

	res := postJSON(t, mtls, p.metaURL, []byte(`{"name":"orders","provider":"acme"}`))
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body).To(HaveKey("id"))
	g.Expect(getJSON(t, mtls, p.metaURL).status).To(Equal(http.StatusOK))
	res = postJSON(t, mtls, p.eventURL, []byte(`{"event-type":"order.created","event-type-version":"v1","event-time":"2026-01-01T00:00:00Z","data":{"id":1}}`))
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body).To(HaveKey("event-id"))
	g.Expect(getJSON(t, mtls, strings.TrimSuffix(p.eventURL, "/events")+"/events/subscribed").status).To(Equal(http.StatusOK))

	// Bad bodies, another application's certificate, no certificate.
	g.Expect(postJSON(t, mtls, p.eventURL, []byte(`[`)).status).To(Equal(http.StatusBadRequest))
	g.Expect(postJSON(t, mtls, p.eventURL, []byte(`{"data":1}`)).status).To(Equal(http.StatusBadRequest))
	g.Expect(postJSON(t, srv.Client(other.cert), p.eventURL, []byte(`{"event-type":"x"}`)).status).To(Equal(http.StatusForbidden))
	_, err := srv.Client().Get(p.metaURL)
	g.Expect(err).To(HaveOccurred(), "the gateway requires a client certificate in the handshake")

	rec := srv.Received()
	g.Expect(rec).To(HaveLen(3))
	g.Expect(rec[0]).To(And(HaveField("Kind", "metadata"), HaveField("Application", "app1"), HaveField("Method", "POST"),
		HaveField("CertSerial", p.leaf.SerialNumber.String()), HaveField("CertSHA256", fingerprint(p.leaf.Raw))))
	g.Expect(string(rec[0].Body)).To(ContainSubstring("orders"))
	g.Expect(rec[2]).To(HaveField("Kind", "event"))
	g.Expect(string(rec[2].Body)).To(ContainSubstring("order.created"))
	st := srv.Stats()
	g.Expect(st.EventsReceived).To(Equal(1))
	g.Expect(st.MetadataReceived).To(Equal(2))
}

func TestTwoPhases(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{TwoPhase: true})
	info := srv.Info()
	g.Expect(info.TwoPhase).To(BeTrue())
	g.Expect(info.RuntimeConnectorURL).To(MatchRegexp(`^https://runtime-connector\.localhost:\d+$`))
	g.Expect(srv.RuntimeConnectorCAPEM()).NotTo(Equal(srv.ConnectorCAPEM()))

	central := pair(t, srv, mustToken(t, srv, "app1"), true)
	g.Expect(central.caPEM).To(Equal(srv.ConnectorCAPEM()))
	res := getJSON(t, srv.Client(central.cert), central.infoURL)
	g.Expect(res.status).To(Equal(http.StatusOK))
	rt := res.body["runtime"].(map[string]any)["tokenUrl"].(string)
	g.Expect(rt).To(HavePrefix(info.RuntimeConnectorURL + "/v1/applications/signingRequests/info?token="))

	runtime := pair(t, srv, rt, true)
	g.Expect(runtime.subject.Organization).To(Equal([]string{"Runtime"}))
	g.Expect(runtime.caPEM).To(Equal(srv.RuntimeConnectorCAPEM()))
	g.Expect(runtime.infoURL).To(Equal(central.infoURL), "one gateway; the certificate's CA picks the connector")
	res = getJSON(t, srv.Client(runtime.cert), runtime.infoURL)
	g.Expect(res.status).To(Equal(http.StatusOK))
	g.Expect(res.body).NotTo(HaveKey("runtime"))

	// Central token URLs do not work on the runtime connector.
	_, tok, err := srv.NewPairingToken("app1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(getJSON(t, srv.Client(), info.RuntimeConnectorURL+"/v1/applications/signingRequests/info?token="+tok).status).To(Equal(http.StatusForbidden))

	// Phase-1 for the registry, phase-2 for events.
	ev := []byte(`{"event-type":"order.created","event-type-version":"v1"}`)
	g.Expect(postJSON(t, srv.Client(central.cert), central.eventURL, ev).status).To(Equal(http.StatusForbidden))
	g.Expect(postJSON(t, srv.Client(runtime.cert), runtime.eventURL, ev).status).To(Equal(http.StatusOK))
	g.Expect(postJSON(t, srv.Client(runtime.cert), central.metaURL, []byte(`{"name":"x"}`)).status).To(Equal(http.StatusForbidden))
	g.Expect(postJSON(t, srv.Client(central.cert), central.metaURL, []byte(`{"name":"x"}`)).status).To(Equal(http.StatusOK))
	issued := srv.Issued()
	g.Expect(issued).To(HaveLen(2))
	g.Expect(issued[1].Runtime).To(BeTrue())
	g.Expect(srv.Stats().Errors).To(HaveKeyWithValue("wrong_connector", 2))
}

func TestCeilSecond(t *testing.T) {
	g := NewWithT(t)
	base := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	for _, tc := range []struct{ in, want time.Time }{
		{base, base},
		{base.Add(time.Nanosecond), base.Add(time.Second)},
		{base.Add(999 * time.Millisecond), base.Add(time.Second)},
	} {
		g.Expect(ceilSecond(tc.in)).To(Equal(tc.want), tc.in.String())
	}
}

func TestCertificatesLiveAtLeastTheirTTL(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	clock.Advance(900 * time.Millisecond) // not on a whole second
	srv := startMock(t, Options{Now: clock.Now, CertTTL: 3 * time.Second})
	p := pair(t, srv, mustToken(t, srv, "app1"), true)
	g.Expect(p.leaf.NotAfter).To(BeTemporally(">=", clock.Now().Add(3*time.Second)))
	g.Expect(p.leaf.NotBefore).To(BeTemporally("<=", clock.Now()))
	clock.Advance(3 * time.Second)
	g.Expect(getJSON(t, srv.Client(p.cert), p.infoURL).status).To(Equal(http.StatusOK))
	clock.Advance(time.Second)
	_, err := srv.Client(p.cert).Get(p.infoURL)
	g.Expect(err).To(HaveOccurred(), "expired on the mock's clock")
}
