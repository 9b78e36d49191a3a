package mockauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestFaults(t *testing.T) {
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now})
	c := srv.Client()
	info := srv.Info()
	tokenURL := info.URL + "/oauth/token"
	token := func() result { return postForm(t, c, tokenURL, ccForm(srv), nil) }

	t.Run("status with Retry-After for the next N calls", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Status: 503, RetryAfter: 2 * time.Second, Count: 2})).To(Succeed())
		for range 2 {
			res := token()
			g.Expect(res.status).To(Equal(http.StatusServiceUnavailable))
			g.Expect(res.header.Get("Retry-After")).To(Equal("2"))
			g.Expect(res.body).To(HaveKey("error"))
		}
		g.Expect(token().status).To(Equal(http.StatusOK))
	})
	t.Run("time window on the mock's clock", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Status: 429, Duration: 30 * time.Second})).To(Succeed())
		g.Expect(token().status).To(Equal(http.StatusTooManyRequests))
		g.Expect(token().status).To(Equal(http.StatusTooManyRequests))
		clock.Advance(30 * time.Second)
		g.Expect(token().status).To(Equal(http.StatusOK))
	})
	t.Run("dropped connection", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Drop: true, Count: 1})).To(Succeed())
		resp, err := c.Do(formRequest(t, tokenURL, ccForm(srv), nil))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		g.Expect(err).To(HaveOccurred())
		g.Expect(errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF")).To(BeTrue(), err.Error())
		g.Expect(token().status).To(Equal(http.StatusOK))
	})
	t.Run("latency", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Latency: 10 * time.Second, Count: 1})).To(Succeed())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Do(formRequest(t, tokenURL, ccForm(srv), nil).WithContext(ctx))
		g.Expect(err).To(MatchError(context.DeadlineExceeded))

		g.Expect(srv.AddFault(Fault{Target: TargetToken, Latency: 150 * time.Millisecond, Count: 1})).To(Succeed())
		start := time.Now()
		g.Expect(token().status).To(Equal(http.StatusOK))
		g.Expect(time.Since(start)).To(BeNumerically(">=", 150*time.Millisecond))
	})
	t.Run("invalid JSON body", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Body: `{"access_token": `, Count: 1})).To(Succeed())
		res := token()
		g.Expect(res.status).To(Equal(http.StatusOK))
		g.Expect(string(res.raw)).To(Equal(`{"access_token": `))
	})
	t.Run("targets are separate", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetCertToken, Status: 500})).To(Succeed())
		g.Expect(token().status).To(Equal(http.StatusOK))
		x509 := srv.Client(srv.BindingCertificate())
		form := ccForm(srv)
		form.Set("client_id", X509ClientID)
		g.Expect(postForm(t, x509, info.CertURL+"/oauth/token", form, nil).status).To(Equal(http.StatusInternalServerError))
		srv.ClearFaults()
		g.Expect(postForm(t, x509, info.CertURL+"/oauth/token", form, nil).status).To(Equal(http.StatusOK))
	})
	t.Run("connector, refused CSRs and events", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetConnector, Status: 502, Count: 1})).To(Succeed())
		tokURL := mustToken(t, srv, "app1")
		res := getJSON(t, c, tokURL)
		g.Expect(res.status).To(Equal(http.StatusBadGateway))
		g.Expect(res.body).To(HaveKeyWithValue("code", BeNumerically("==", 502)))

		// The token survived the failed call; a CSR fault refuses only the CSR.
		g.Expect(srv.AddFault(Fault{Target: TargetCSR, Status: 400, Count: 1})).To(Succeed())
		res = getJSON(t, c, tokURL)
		g.Expect(res.status).To(Equal(http.StatusOK))
		key := newKey(t, true)
		csrURL := res.body["csrUrl"].(string)
		g.Expect(postJSON(t, c, csrURL, csrJSON(t, key, wantSubject("Organization", "app1"))).status).To(Equal(http.StatusBadRequest))
		created := postJSON(t, c, csrURL, csrJSON(t, key, wantSubject("Organization", "app1")))
		g.Expect(created.status).To(Equal(http.StatusCreated))
		p := finishPairing(t, res, created, key, wantSubject("Organization", "app1"))

		g.Expect(srv.AddFault(Fault{Target: TargetEvents, Status: 503, RetryAfter: time.Second, Count: 1})).To(Succeed())
		ev := []byte(`{"event-type":"x","event-type-version":"v1"}`)
		res = postJSON(t, srv.Client(p.cert), p.eventURL, ev)
		g.Expect(res.status).To(Equal(http.StatusServiceUnavailable))
		g.Expect(res.header.Get("Retry-After")).To(Equal("1"))
		g.Expect(postJSON(t, srv.Client(p.cert), p.eventURL, ev).status).To(Equal(http.StatusOK))
	})
	t.Run("bad faults are refused", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: "nope", Status: 500})).To(MatchError(ContainSubstring("target")))
		g.Expect(srv.AddFault(Fault{Target: TargetToken})).To(MatchError(ContainSubstring("does nothing")))
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Status: 42})).To(HaveOccurred())
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Status: 500, Count: -1})).To(HaveOccurred())
	})
	g := NewWithT(t)
	st := srv.Stats()
	g.Expect(st.FaultsApplied).To(Equal(12))
	g.Expect(st.Errors).To(HaveKeyWithValue("fault", 12))
	g.Expect(st.TokenRequests).To(Equal(14))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantClientCredentials, 14))
	g.Expect(st.TokenRequestsByTenant).To(HaveKeyWithValue("provider", 14))
	g.Expect(st.TokensIssued).To(Equal(6))
	faulted := 0
	for _, r := range st.LastRequests {
		if r.Fault {
			faulted++
		}
	}
	g.Expect(faulted).To(Equal(12))
}

func adminDo(t *testing.T, method, u, body string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, http.DefaultClient, req)
}

func TestControlAPI(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now})
	c := srv.Client()
	info := srv.Info()
	admin := info.AdminURL + "/mock"
	g.Expect(info.AdminURL).To(MatchRegexp(`^http://127\.0\.0\.1:\d+$`))

	// faults
	res := adminDo(t, "POST", admin+"/faults", `{"target":"token","status":503,"retry_after":2,"count":1}`)
	g.Expect(res.status).To(Equal(http.StatusCreated), string(res.raw))
	tok := postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil)
	g.Expect(tok.status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(tok.header.Get("Retry-After")).To(Equal("2"))
	g.Expect(adminDo(t, "POST", admin+"/faults", `{"target":"token","latency":"1h","duration":"30s"}`).status).To(Equal(http.StatusCreated))
	g.Expect(adminDo(t, "DELETE", admin+"/faults", "").status).To(Equal(http.StatusNoContent))
	g.Expect(postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil).status).To(Equal(http.StatusOK))
	for _, bad := range []string{`{"target":"nope","status":500}`, `{"target":"token","latency":"soon"}`, `{"target":"token","status":500,"extra":1}`, `[`} {
		res = adminDo(t, "POST", admin+"/faults", bad)
		g.Expect(res.status).To(Equal(http.StatusBadRequest), bad)
		g.Expect(res.body).To(HaveKey("error"))
	}

	// ttl
	res = adminDo(t, "POST", admin+"/ttl", `{"token":"60s","cert":"30s"}`)
	g.Expect(res.status).To(Equal(http.StatusOK))
	g.Expect(res.body).To(And(HaveKeyWithValue("token", "1m0s"), HaveKeyWithValue("cert", "30s")))
	g.Expect(postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil).body).To(HaveKeyWithValue("expires_in", BeNumerically("==", 60)))
	g.Expect(adminDo(t, "POST", admin+"/ttl", `{"token":-1}`).status).To(Equal(http.StatusBadRequest))

	// tokens -> pair -> revoke
	res = adminDo(t, "POST", admin+"/tokens", `{"application":"app7"}`)
	g.Expect(res.status).To(Equal(http.StatusCreated))
	g.Expect(res.body["url"]).To(HaveSuffix("?token=" + res.body["token"].(string)))
	p := pair(t, srv, res.body["url"].(string), true)
	g.Expect(p.leaf.NotAfter).To(Equal(clock.Now().Add(30 * time.Second).Truncate(time.Second)))
	g.Expect(adminDo(t, "POST", admin+"/tokens", `{}`).status).To(Equal(http.StatusBadRequest))
	certs := adminDo(t, "GET", admin+"/certificates", "")
	g.Expect(certs.status).To(Equal(http.StatusOK))
	g.Expect(string(certs.raw)).To(ContainSubstring(`"sha256":"` + fingerprint(p.leaf.Raw) + `"`))
	res = adminDo(t, "POST", admin+"/revoke", `{"sha256":"`+fingerprint(p.leaf.Raw)+`"}`)
	g.Expect(res.status).To(Equal(http.StatusOK))
	renew := info.GatewayURL + pathRenewals
	g.Expect(postJSON(t, srv.Client(p.cert), renew, csrJSON(t, p.key, p.subject)).status).To(Equal(http.StatusForbidden))
	g.Expect(getJSON(t, srv.Client(p.cert), p.infoURL).status).To(Equal(http.StatusOK), "revocation blocks renewal only")
	g.Expect(adminDo(t, "POST", admin+"/revoke", `{"sha256":"00"}`).status).To(Equal(http.StatusNotFound))
	g.Expect(adminDo(t, "POST", admin+"/revoke", `{"serial":"1"}`).status).To(Equal(http.StatusNotFound))
	g.Expect(adminDo(t, "POST", admin+"/revoke", `{}`).status).To(Equal(http.StatusBadRequest))
	g.Expect(adminDo(t, "POST", admin+"/revoke", `{"serial":"2"}`).status).To(Equal(http.StatusOK), "serial 2: every certificate")

	// rotate-keys
	old := srv.KeyID()
	res = adminDo(t, "POST", admin+"/rotate-keys", "")
	g.Expect(res.status).To(Equal(http.StatusOK))
	g.Expect(res.body["kid"]).NotTo(Equal(old))
	g.Expect(res.body["kid"]).To(Equal(srv.KeyID()))

	// info, vcap, ca.crt, received
	res = adminDo(t, "GET", admin+"/info", "")
	var gotInfo Info
	g.Expect(json.Unmarshal(res.raw, &gotInfo)).To(Succeed())
	g.Expect(gotInfo).To(Equal(info))
	g.Expect(adminDo(t, "GET", admin+"/vcap", "").raw).To(Equal(srv.VCAPServices()))
	g.Expect(adminDo(t, "GET", admin+"/ca.crt", "").raw).To(Equal(srv.CACertPEM()))
	g.Expect(adminDo(t, "GET", admin+"/received", "").status).To(Equal(http.StatusOK))
	g.Expect(adminDo(t, "GET", admin+"/nope", "").status).To(Equal(http.StatusNotFound))

	// stats: the same JSON as Stats(), with the DESIGN.md keys.
	res = adminDo(t, "GET", admin+"/stats", "")
	g.Expect(res.status).To(Equal(http.StatusOK))
	for _, k := range []string{"token_requests", "token_requests_by_grant", "token_requests_by_tenant", "csr_signed", "renewals",
		"revocations", "info_requests", "events_received", "errors", "last_requests"} {
		g.Expect(res.body).To(HaveKey(k))
	}
	g.Expect(res.body).To(And(HaveKeyWithValue("token_requests", BeNumerically("==", 3)), HaveKeyWithValue("csr_signed", BeNumerically("==", 1)),
		HaveKeyWithValue("revocations", BeNumerically("==", 2))))
	var st Stats
	g.Expect(json.Unmarshal(res.raw, &st)).To(Succeed())
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantClientCredentials, 3))
	// No secret or one-time token in the stats.
	for _, secret := range []string{srv.ClientSecret(SecretClientID), p.info.body["csrUrl"].(string)[strings.Index(p.info.body["csrUrl"].(string), "token=")+6:]} {
		g.Expect(bytes.Contains(res.raw, []byte(secret))).To(BeFalse())
	}
}
