package guard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkJWTVerify measures a cached-key token check (RS256 signature,
// issuer, audience, scopes).
func BenchmarkJWTVerify(b *testing.B) {
	key := testRSAKey()
	jwks := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(jwksJSON("k1", &key.PublicKey))
	}))
	defer jwks.Close()
	host := jwks.Listener.Addr().String()
	b1 := Binding{Name: "b", Flavor: FlavorXSUAA, ClientID: "sb-app!t1", XSAppName: "app!t1", UAADomain: "127.0.0.1", URL: "https://" + host}
	// 127.0.0.1 is the "uaadomain" here so the test server's host passes.
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "https://" + host + "/oauth/token", "cid": "sb-app!t1", "sub": "sb-app!t1", "zid": "z1",
		"scope": []string{"app!t1.read"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
	})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	kc := newKeyCache(jwks.Client(), time.Now, discardLogger(), time.Hour, time.Second, Limits{})
	defer kc.close()
	v := &jwtVerifier{binding: "b", lookup: StaticBindings(b1), keys: kc, leeway: DefaultLeeway, now: time.Now}
	if _, ref := v.verify(context.Background(), raw, []string{"read"}); ref != nil {
		b.Fatal(ref)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ref := v.verify(context.Background(), raw, []string{"read"}); ref != nil {
			b.Fatal(ref)
		}
	}
}
