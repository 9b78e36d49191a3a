package guard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzConfig: any inbound: YAML either fails to decode, fails Validate with
// FieldErrors, or passes; never a panic.
func FuzzConfig(f *testing.F) {
	f.Add(designExample)
	f.Add("listen: ':1'\napp: http://x\nrules: [{path: /, accept: [mtls]}]\n")
	f.Add("rules: [{path: '', accept: [jwt, jwt, x]}]\ntrusted_proxies: ['::1/200']\n")
	f.Fuzz(func(t *testing.T, s string) {
		var c Config
		dec := yaml.NewDecoder(strings.NewReader(s))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			if _, ok := err.(FieldErrors); !ok {
				t.Fatalf("Validate returned %T", err)
			}
		}
		_ = c.JWTBindings()
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add(string(jwksJSON("k", &testRSAKey().PublicKey)))
	f.Add(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`)
	f.Add(`{"keys":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := parseJWKS([]byte(s))
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if k.N.BitLen() < 2041 || k.E < 3 {
				t.Fatal("weak key accepted")
			}
		}
	})
}

// FuzzGuardRequest sends arbitrary paths and Authorization headers to a
// guard with an oauth1 rule: nothing unauthenticated reaches the app, and no
// input panics.
func FuzzGuardRequest(f *testing.F) {
	f.Add("/aps/x", `OAuth oauth_consumer_key="aps-consumer", oauth_signature="x"`, "X-Credbroker-Subject")
	f.Add("/aps/../admin", "Bearer x.y.z", "X-Forwarded-Host")
	f.Add("/", "", "")
	f.Add("/aps/..;/admin", `OAuth oauth_consumer_key="aps-consumer"`, "X_Credbroker_Subject")
	f.Add("//aps/x%2f..", "Bearer x", "Connection")
	dir := f.TempDir()
	keyFile := dir + "/key"
	secretFile := dir + "/secret"
	for p, v := range map[string]string{keyFile: apsKey, secretFile: apsSecret} {
		if err := writeFileErr(p, v); err != nil {
			f.Fatal(err)
		}
	}
	var reached atomic.Int32
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()
	g, err := New(&Config{Listen: ":0", App: appSrv.URL, Rules: []Rule{
		{Path: "/aps/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: keyFile, SecretFile: secretFile}},
	}})
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	f.Fuzz(func(t *testing.T, path, auth, header string) {
		r := httptest.NewRequest("GET", "http://guard.local/", strings.NewReader("body"))
		r.URL.Path = path
		r.RequestURI = path
		r.Header.Set("Authorization", auth)
		if header != "" && !strings.ContainsAny(header, ":\r\n ") {
			r.Header.Set(header, "spoofed")
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code < 400 || reached.Load() != 0 {
			t.Fatalf("unauthenticated request answered %d (app reached %d times)", w.Code, reached.Load())
		}
	})
}
