package tokenclient

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// startMock starts mockauth for one test.
func startMock(t *testing.T, opts mockauth.Options) *mockauth.Server {
	t.Helper()
	return mockauth.StartTest(t, opts)
}

func mockSecretConfig(srv *mockauth.Server) Config {
	info := srv.Info()
	return Config{ClientID: info.SecretClientID, ClientSecret: Secret(srv.ClientSecret(info.SecretClientID)),
		TokenURL: info.URL, UAADomain: info.UAADomain}
}

func mockX509Config(srv *mockauth.Server, hook func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) Config {
	info := srv.Info()
	return Config{ClientID: info.X509ClientID, TokenURL: info.URL, CertURL: info.CertURL, UAADomain: info.UAADomain,
		GetClientCertificate: hook}
}

func mockOpts(srv *mockauth.Server, more ...Option) []Option {
	return append([]Option{WithRootCAs(srv.CAPool()), WithDialContext(mockauth.DialContext)}, more...)
}

// claims decodes a JWT's payload (the mock's tokens are JWTs).
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMockauthGrantsTenantsAndHosts(t *testing.T) {
	srv := startMock(t, mockauth.Options{})
	info := srv.Info()
	g := NewWithT(t)
	g.Expect(len(info.Tenants)).To(BeNumerically(">=", 2))
	provider, sub := info.Tenants[0], info.Tenants[1]
	bindingCert := srv.BindingCertificate()
	clients := map[string]*Client{
		"secret": newClient(t, mockSecretConfig(srv), mockOpts(srv)...),
		"x509": newClient(t, mockX509Config(srv, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &bindingCert, nil
		}), mockOpts(srv)...),
	}
	for _, kind := range []string{"secret", "x509"} {
		c := clients[kind]
		host := mockauth.UAADomain
		if kind == "x509" {
			host = mockauth.CertUAADomain
		}
		for _, tc := range []struct {
			name     string
			req      Request
			zone     string
			wantHost string
		}{
			{"provider", Request{}, provider.ZoneID, provider.Subdomain + "." + host},
			{"tenant by subdomain", Request{Tenant: sub.Subdomain}, sub.ZoneID, sub.Subdomain + "." + host},
			{"tenant by zone", Request{ZoneID: sub.ZoneID}, sub.ZoneID, host},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				g := NewWithT(t)
				tok, err := c.Token(bg, tc.req)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(claims(t, tok.AccessToken)).To(HaveKeyWithValue("zid", tc.zone))
				g.Expect(tok.URL).To(HavePrefix("https://" + tc.wantHost + ":"))
				last := srv.Stats().LastRequests
				g.Expect(last).NotTo(BeEmpty())
				g.Expect(last[len(last)-1].Host).To(HavePrefix(tc.wantHost + ":"))
				if tc.req.ZoneID != "" {
					g.Expect(last[len(last)-1].XZid).To(Equal(tc.req.ZoneID))
				}
				listener := "token"
				if kind == "x509" {
					listener = "certtoken"
				}
				g.Expect(last[len(last)-1].Listener).To(Equal(listener))
				g.Expect(tok.Expiry).To(BeTemporally("~", time.Now().Add(mockauth.DefaultTokenTTL), 5*time.Second))
			})
		}
	}

	// User grants on both hosts: password, then jwt-bearer with the user's
	// token, then refresh_token with the refresh token.
	for _, kind := range []string{"secret", "x509"} {
		t.Run(kind+"/user grants", func(t *testing.T) {
			g := NewWithT(t)
			c := clients[kind]
			user, err := c.Token(bg, Request{Grant: GrantPassword, Username: "alice", Password: "alice-password", Tenant: sub.Subdomain})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims(t, user.AccessToken)).To(HaveKeyWithValue("user_name", "alice"))
			g.Expect(user.RefreshToken).NotTo(BeEmpty())

			exchanged, err := c.Token(bg, Request{Grant: GrantJWTBearer, Assertion: Secret(user.AccessToken), Tenant: sub.Subdomain})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims(t, exchanged.AccessToken)).To(HaveKeyWithValue("grant_type", string(GrantJWTBearer)))

			refreshed, err := c.Token(bg, Request{Grant: GrantRefreshToken, RefreshToken: Secret(user.RefreshToken), Tenant: sub.Subdomain})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims(t, refreshed.AccessToken)).To(HaveKeyWithValue("user_name", "alice"))
		})
	}
	st := srv.Stats()
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(string(GrantPassword), 2))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(string(GrantJWTBearer), 2))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(string(GrantRefreshToken), 2))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue("client_credentials", 6))
	g.Expect(st.TokenRequests).To(Equal(12), "every key fetched once")
}

func TestMockauthIAS(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, mockauth.Options{})
	info := srv.Info()
	c := newClient(t, Config{ClientID: info.IASClientID, ClientSecret: Secret(srv.ClientSecret(info.IASClientID)),
		TokenURL: info.IASURL, Flavor: IAS}, mockOpts(srv)...)
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.URL).To(HaveSuffix("/oauth2/token"))
	g.Expect(claims(t, tok.AccessToken)).To(HaveKey("app_tid"))
}

func TestMockauthCertificateRotation(t *testing.T) {
	g := NewWithT(t)
	ownCA := testpki.NewCA()
	srv := startMock(t, mockauth.Options{ClientCAs: ownCA.Pool()})
	var cur atomic.Pointer[tls.Certificate]
	bindingCert := srv.BindingCertificate()
	cur.Store(&bindingCert)
	c := newClient(t, mockX509Config(srv, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cur.Load(), nil }),
		mockOpts(srv, WithRetry(RetryPolicy{MaxAttempts: 1}))...)
	_, err := c.Token(bg, Request{Scopes: nil})
	g.Expect(err).NotTo(HaveOccurred())

	// Rotate to a certificate the mock does not trust: the very next fetch
	// presents it (and fails), although a connection was open.
	rogue := testpki.NewCA().Issue(testpki.ClientAuth()).TLSCertificate()
	cur.Store(&rogue)
	_, err = c.Token(bg, Request{Tenant: srv.Info().Tenants[0].Subdomain, Scopes: []string{"uaa.resource"}})
	g.Expect(err).To(HaveOccurred())

	// Rotate to a trusted one: fetches work again, with nothing rebuilt.
	good := ownCA.Issue(testpki.ClientAuth()).TLSCertificate()
	cur.Store(&good)
	_, err = c.Token(bg, Request{Tenant: srv.Info().Tenants[1].Subdomain})
	g.Expect(err).NotTo(HaveOccurred())
}

func TestMockauthErrors(t *testing.T) {
	srv := startMock(t, mockauth.Options{})
	info := srv.Info()
	t.Run("wrong secret, negative cache", func(t *testing.T) {
		g := NewWithT(t)
		cfg := mockSecretConfig(srv)
		cfg.ClientSecret = "planted-wrong-secret"
		before := srv.Stats().TokenRequests
		c := newClient(t, cfg, mockOpts(srv)...)
		for range 5 {
			_, err := c.Token(bg, Request{})
			var te *TokenError
			g.Expect(errors.As(err, &te)).To(BeTrue())
			g.Expect(te.StatusCode).To(Equal(401))
			g.Expect(te.ErrorCode).To(Equal("unauthorized"))
			g.Expect(te.Description).To(Equal("Bad credentials"))
			g.Expect(err.Error()).NotTo(ContainSubstring("planted"))
		}
		g.Expect(srv.Stats().TokenRequests - before).To(Equal(1))
	})
	c := newClient(t, mockSecretConfig(srv), mockOpts(srv)...)
	for _, tc := range []struct {
		name   string
		req    Request
		status int
		code   string
	}{
		{"unknown scope", Request{Scopes: []string{"not.granted"}}, 400, "invalid_scope"},
		{"unknown tenant", Request{Tenant: "nobody"}, 404, "not_found"},
		{"unknown zone", Request{ZoneID: "no-such-zone"}, 404, "not_found"},
		{"wrong password", Request{Grant: GrantPassword, Username: "alice", Password: "planted-wrong"}, 401, "unauthorized"},
		{"bad assertion", Request{Grant: GrantJWTBearer, Assertion: "planted.bad.assertion"}, 401, "invalid_grant"},
		{"bad refresh token", Request{Grant: GrantRefreshToken, RefreshToken: "planted-refresh"}, 401, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := c.Token(bg, tc.req)
			var te *TokenError
			g.Expect(errors.As(err, &te)).To(BeTrue(), "%v", err)
			g.Expect(te.StatusCode).To(Equal(tc.status))
			g.Expect(te.ErrorCode).To(Equal(tc.code))
			g.Expect(err.Error()).NotTo(ContainSubstring("planted"))
		})
	}
	t.Run("x509 client without a certificate the mock trusts", func(t *testing.T) {
		g := NewWithT(t)
		rogue := testpki.NewCA().Issue(testpki.ClientAuth()).TLSCertificate()
		c := newClient(t, mockX509Config(srv, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }),
			mockOpts(srv, WithRetry(RetryPolicy{MaxAttempts: 2}), WithClock(newFakeClock()))...)
		_, err := c.Token(bg, Request{})
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring(info.CertURL + "/oauth/token"))
	})
	t.Run("malformed 200", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Body: "{not json", Count: 1})).To(Succeed())
		c := newClient(t, mockSecretConfig(srv), mockOpts(srv)...)
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrBadResponse)).To(BeTrue())
	})
}

func TestMockauthRetryAfter(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, mockauth.Options{})
	clk := newFakeClock()
	g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503, RetryAfter: 2 * time.Second, Count: 2})).To(Succeed())
	c := newClient(t, mockSecretConfig(srv), mockOpts(srv, WithClock(clk))...)
	_, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(clk.Sleeps()).To(Equal([]time.Duration{2 * time.Second, 2 * time.Second}))
	st := srv.Stats()
	g.Expect(st.FaultsApplied).To(Equal(2))
	g.Expect(st.TokensIssued).To(Equal(1))
}

func TestMockauthRefreshAheadAndExpiryWhileDown(t *testing.T) {
	g := NewWithT(t)
	clk := newFakeClock()
	srv := startMock(t, mockauth.Options{TokenTTL: 10 * time.Minute, Now: clk.Now})
	c := newClient(t, mockSecretConfig(srv), mockOpts(srv, WithClock(clk), WithRefreshAhead(2.0/3, 0),
		WithRetry(RetryPolicy{MaxAttempts: 2}))...)
	first, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first.Expiry).To(Equal(clk.Now().Add(10 * time.Minute)))

	clk.Advance(5 * time.Minute)
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(first), "before 2/3 of the life")
	g.Expect(srv.Stats().TokenRequests).To(Equal(1))

	clk.Advance(2 * time.Minute) // 7m > 6m40s: refreshed in the background
	g.Eventually(func() int { return srv.Stats().TokensIssued }).Should(Equal(2))
	var second *Token
	g.Eventually(func() string {
		second, _ = c.Token(bg, Request{})
		return second.AccessToken
	}).ShouldNot(Equal(first.AccessToken))

	// The server goes down: the valid token is served until it expires,
	// then a clear error.
	g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503})).To(Succeed())
	clk.Advance(7 * time.Minute) // past the refresh point of the second token
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(second))
	g.Eventually(func() int { return srv.Stats().FaultsApplied }).Should(BeNumerically(">=", 2))
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(second))

	clk.Advance(3 * time.Minute) // past expiry
	_, err = c.Token(bg, Request{})
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
	g.Expect(err).To(MatchError(ContainSubstring("status 503")))

	srv.ClearFaults()
	clk.Advance(10 * time.Second)
	third, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(third.AccessToken).NotTo(Equal(second.AccessToken))
}

func TestMockauthColdBurstMakesOneRequest(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, mockauth.Options{})
	// Slow the first answer so that every caller arrives while it is in flight.
	g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Latency: 300 * time.Millisecond, Count: 1})).To(Succeed())
	c := newClient(t, mockSecretConfig(srv), mockOpts(srv)...)
	const n = 1000
	var wg sync.WaitGroup
	toks := make([]*Token, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			toks[i], errs[i] = c.Token(bg, Request{Tenant: srv.Info().Tenants[1].Subdomain})
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		g.Expect(errs[i]).NotTo(HaveOccurred())
		g.Expect(toks[i]).To(BeIdenticalTo(toks[0]))
	}
	g.Expect(srv.Stats().TokenRequests).To(Equal(1))
}
