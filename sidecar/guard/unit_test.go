package guard

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"
)

var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func jwksJSON(kid string, pub *rsa.PublicKey) []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	return b
}

// A cold burst of concurrent lookups makes exactly one fetch; everyone waits
// for it.
func TestKeyCacheOneFetchInFlight(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
		_, _ = w.Write(jwksJSON("k1", &testRSAKey().PublicKey))
	}))
	defer srv.Close()
	c := newKeyCache(srv.Client(), time.Now, discardLogger(), time.Hour, time.Second, Limits{})
	defer c.close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.key(context.Background(), srv.URL, "k1")
			errs <- err
		}()
	}
	g.Eventually(hits.Load).Should(Equal(int32(1)))
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(hits.Load()).To(Equal(int32(1)))
	g.Expect(c.fetches()).To(Equal(1))
}

func TestKeyCacheBadDocuments(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"not JSON", "<html>"},
		{"no keys", `{"keys":[]}`},
		{"EC only", `{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"}]}`},
		{"short RSA", `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`},
		{"encryption key", string(jwksJSONUse("enc"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := parseJWKS([]byte(tc.body))
			g.Expect(err).To(HaveOccurred())
		})
	}
	g := NewWithT(t)
	keys, err := parseJWKS(jwksJSON("k", &testRSAKey().PublicKey))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys["k"].Equal(&testRSAKey().PublicKey)).To(BeTrue())
}

func jwksJSONUse(use string) []byte {
	var m map[string][]map[string]string
	_ = json.Unmarshal(jwksJSON("k", &testRSAKey().PublicKey), &m)
	m["keys"][0]["use"] = use
	b, _ := json.Marshal(m)
	return b
}

func TestJWKSURL(t *testing.T) {
	xs := Binding{Name: "x", Flavor: FlavorXSUAA, ClientID: "sb-x!t1", XSAppName: "x!t1", UAADomain: "authentication.eu10.hana.ondemand.com",
		URL: "https://provider.authentication.eu10.hana.ondemand.com", CertURL: "https://provider.authentication.cert.eu10.hana.ondemand.com"}
	ias := Binding{Name: "i", Flavor: FlavorIAS, ClientID: "c1", UAADomain: "accounts.ondemand.com", URL: "https://acme.accounts.ondemand.com"}
	for _, tc := range []struct {
		name     string
		b        Binding
		iss, jku string
		want     string // "" = refused
	}{
		{"xsuaa tenant jku", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys"},
		{"xsuaa no jku", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys"},
		{"xsuaa explicit 443", xs, "https://sub1.authentication.eu10.hana.ondemand.com:443/oauth/token", "", "https://sub1.authentication.eu10.hana.ondemand.com:443/token_keys"},
		{"xsuaa jku elsewhere", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://evil.example.com/token_keys", ""},
		{"xsuaa jku suffix trick", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://evilauthentication.eu10.hana.ondemand.com/token_keys", ""},
		{"xsuaa jku http", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "http://sub1.authentication.eu10.hana.ondemand.com/token_keys", ""},
		{"xsuaa jku userinfo", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://evil.com@sub1.authentication.eu10.hana.ondemand.com/token_keys", ""},
		{"xsuaa jku other port", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://sub1.authentication.eu10.hana.ondemand.com:8443/token_keys", ""},
		{"xsuaa jku query", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys?x=1", ""},
		{"xsuaa issuer on the cert domain", xs, "https://sub1.authentication.cert.eu10.hana.ondemand.com/oauth/token", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys"},
		{"xsuaa issuer on the cert domain, no jku", xs, "https://sub1.authentication.cert.eu10.hana.ondemand.com/oauth/token", "", "https://sub1.authentication.eu10.hana.ondemand.com/token_keys"},
		{"xsuaa jku on the cert domain", xs, "https://sub1.authentication.eu10.hana.ondemand.com/oauth/token", "https://sub1.authentication.cert.eu10.hana.ondemand.com/token_keys", ""},
		{"xsuaa issuer on another cert domain", xs, "https://sub1.authentication.cert.us10.hana.ondemand.com/oauth/token", "", ""},
		{"xsuaa issuer elsewhere", xs, "https://login.example.com/oauth/token", "", ""},
		{"xsuaa other region", xs, "https://sub1.authentication.us10.hana.ondemand.com/oauth/token", "", ""},
		{"xsuaa no issuer", xs, "", "", ""},
		{"ias own host", ias, "https://acme.accounts.ondemand.com", "", "https://acme.accounts.ondemand.com/oauth2/certs"},
		{"ias other tenant under domain", ias, "https://other.accounts.ondemand.com", "", "https://other.accounts.ondemand.com/oauth2/certs"},
		{"ias jku ignored", ias, "https://acme.accounts.ondemand.com", "https://evil.example.com/keys", "https://acme.accounts.ondemand.com/oauth2/certs"},
		{"ias elsewhere", ias, "https://acme.evil.com", "", ""},
		{"ias issuer with path", ias, "https://acme.accounts.ondemand.com/x", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := &jwt.Token{Header: map[string]any{"alg": "RS256"}}
			if tc.jku != "" {
				tok.Header["jku"] = tc.jku
			}
			got, ref := jwksURL(tc.b, tok, jwt.MapClaims{"iss": tc.iss})
			if tc.want == "" {
				g.Expect(ref).NotTo(BeNil())
				g.Expect(ref.reason).To(Equal(ReasonWrongIssuer))
				return
			}
			g.Expect(ref).To(BeNil())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestAudienceAndScopes(t *testing.T) {
	xs := Binding{Flavor: FlavorXSUAA, ClientID: "sb-app!t1", XSAppName: "app!t1"}
	ias := Binding{Flavor: FlavorIAS, ClientID: "c1"}
	for _, tc := range []struct {
		name   string
		b      Binding
		claims jwt.MapClaims
		want   bool
	}{
		{"cid", xs, jwt.MapClaims{"cid": "sb-app!t1"}, true},
		{"client_id", xs, jwt.MapClaims{"client_id": "sb-app!t1"}, true},
		{"aud client", xs, jwt.MapClaims{"cid": "other", "aud": []any{"sb-app!t1"}}, true},
		{"aud xsappname", xs, jwt.MapClaims{"cid": "other", "aud": []any{"x", "app!t1"}}, true},
		{"aud string", xs, jwt.MapClaims{"aud": "app!t1"}, true},
		{"other client", xs, jwt.MapClaims{"cid": "other", "aud": []any{"other"}}, false},
		{"prefix is not equal", xs, jwt.MapClaims{"cid": "sb-app!t1x", "aud": []any{"app!t1.read"}}, false},
		{"nothing", xs, jwt.MapClaims{}, false},
		{"ias aud", ias, jwt.MapClaims{"aud": []any{"c1"}}, true},
		{"ias azp only", ias, jwt.MapClaims{"azp": "c1", "aud": []any{"c2"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(audienceMatches(tc.b, tc.claims)).To(Equal(tc.want))
		})
	}
	g := NewWithT(t)
	g.Expect(requiredScopes(xs, []string{"read", "app!t1.write"})).To(Equal([]string{"app!t1.read", "app!t1.write"}))
	g.Expect(requiredScopes(ias, []string{"read"})).To(Equal([]string{"read"}))
	g.Expect(missingScopes(xs, []string{"app!t1.read"}, []string{"read", "write"})).To(Equal([]string{"app!t1.write"}))
	g.Expect(missingScopes(xs, []string{"read"}, []string{"read"})).To(Equal([]string{"app!t1.read"}))
	g.Expect(tenantOf("https://sub1.authentication.localhost:8443/oauth/token", Binding{UAADomain: "authentication.localhost"})).To(Equal("sub1"))
	g.Expect(tenantOf("https://authentication.localhost/oauth/token", Binding{UAADomain: "authentication.localhost"})).To(Equal(""))
}

func TestExternalURL(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "::1"}
	ps := mustPrefixes(t, trusted)
	for _, tc := range []struct {
		name, remote, proto, host, want string
		tls                             bool
	}{
		{"direct", "192.0.2.1:5555", "", "", "http://guard.local/p?q=1", false},
		{"direct TLS", "192.0.2.1:5555", "", "", "https://guard.local/p?q=1", true},
		{"untrusted forwarded", "192.0.2.1:5555", "https", "api.example.com", "http://guard.local/p?q=1", false},
		{"trusted forwarded", "10.1.2.3:5555", "https", "api.example.com", "https://api.example.com/p?q=1", false},
		{"trusted IPv6", "[::1]:5555", "https", "api.example.com:8443", "https://api.example.com:8443/p?q=1", false},
		{"trusted, first of a list", "10.1.2.3:5555", "https, http", "a.example.com, b.example.com", "https://a.example.com/p?q=1", false},
		{"trusted, junk proto", "10.1.2.3:5555", "gopher", "api.example.com", "http://api.example.com/p?q=1", false},
		{"trusted, junk host", "10.1.2.3:5555", "https", "evil.com/x", "https://guard.local/p?q=1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := httptest.NewRequest("GET", "http://guard.local/p?q=1", nil)
			r.RemoteAddr = tc.remote
			if !tc.tls {
				r.TLS = nil
			}
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
				r.Header.Set("X-Forwarded-Host", tc.host)
			}
			r.RequestURI = "/p?q=1"
			if tc.tls {
				r.TLS = tlsState()
			}
			g.Expect(externalURL(r, ps).String()).To(Equal(tc.want))
		})
	}
}

// After close, cached keys are still served but no background refresh
// starts (the guard of a replaced configuration may see late requests).
func TestKeyCacheAfterClose(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(jwksJSON("k1", &testRSAKey().PublicKey))
	}))
	defer srv.Close()
	clock := newFakeClock(time.Now())
	c := newKeyCache(srv.Client(), clock.Now, discardLogger(), time.Minute, time.Second, Limits{})
	_, err := c.key(context.Background(), srv.URL, "k1")
	g.Expect(err).NotTo(HaveOccurred())
	c.close()
	c.close() // idempotent
	clock.Advance(time.Hour)
	_, err = c.key(context.Background(), srv.URL, "k1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hits.Load()).To(Equal(int32(1)))
}
