package mockauth

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"crypto/rsa"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

// newFakeClock is the settable clock of the mock's token and certificate
// times.
func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

func startMock(t *testing.T, opts Options) *Server {
	t.Helper()
	return StartTest(t, opts)
}

type result struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func do(t *testing.T, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	res := result{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &res.body)
	return res
}

func formRequest(t *testing.T, u string, form url.Values, hdr map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, hdr map[string]string) result {
	t.Helper()
	return do(t, c, formRequest(t, u, form, hdr))
}

func getJSON(t *testing.T, c *http.Client, u string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func ccForm(srv *Server) url.Values {
	return url.Values{
		"grant_type":    {GrantClientCredentials},
		"client_id":     {SecretClientID},
		"client_secret": {srv.ClientSecret(SecretClientID)},
	}
}

// tenantURL replaces the first host label of base with sub.
func tenantURL(base, sub string) string {
	u, _ := url.Parse(base)
	host := u.Hostname()
	u.Host = sub + host[strings.Index(host, "."):] + ":" + u.Port()
	return u.String()
}

// agnosticURL drops the tenant label: https://authentication.localhost:PORT.
func agnosticURL(base string) string {
	u, _ := url.Parse(base)
	host := u.Hostname()
	u.Host = host[strings.Index(host, ".")+1:] + ":" + u.Port()
	return u.String()
}

// verifyWithJWKS checks a token against the JWKS the mock publishes at
// jwksURL, as a relying party would, and returns header and claims.
func verifyWithJWKS(t *testing.T, c *http.Client, jwksURL, token string, now time.Time) (map[string]any, jwt.MapClaims, error) {
	t.Helper()
	res := getJSON(t, c, jwksURL)
	if res.status != http.StatusOK {
		t.Fatalf("JWKS: status %d", res.status)
	}
	var set struct {
		Keys []struct{ Kid, N, E, Kty, Alg string }
	}
	if err := json.Unmarshal(res.raw, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(token, claims, func(tk *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k.Kid == tk.Header["kid"] && k.Kty == "RSA" && k.Alg == "RS256" {
				n, _ := base64.RawURLEncoding.DecodeString(k.N)
				e, _ := base64.RawURLEncoding.DecodeString(k.E)
				return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
			}
		}
		return nil, jwt.ErrTokenUnverifiable
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return nil, nil, err
	}
	return tok.Header, claims, nil
}

func withCert(srv *Server, cert tls.Certificate) *http.Client { return srv.Client(cert) }

var _ = NewWithT
