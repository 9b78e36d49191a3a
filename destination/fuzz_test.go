package destination

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzBuild: any find-destination answer gives a Destination or an *Error
// with a reason, never a panic, and an error never repeats a password or
// token value from the answer.
func FuzzBuild(f *testing.F) {
	f.Add(`{"destinationConfiguration":{"Name":"d","URL":"https://x","Authentication":"OAuth2ClientCredentials"},"authTokens":[{"type":"bearer","value":"tok-secret-value","http_header":{"key":"Authorization","value":"Bearer tok-secret-value"},"expires_in":"3600"}]}`, "")
	f.Add(`{"destinationConfiguration":{"Name":"d","URL":"http://v:1","Authentication":"PrincipalPropagation","ProxyType":"OnPremise","URL.headers.X-A":"1","URL.queries.q":"2"}}`, "a.b.c")
	f.Add(`{"destinationConfiguration":{"URL":"https://x","Authentication":"ClientCertificateAuthentication","KeyStoreLocation":"k.p12","KeyStorePassword":"pw-secret-value"},"certificates":[{"Name":"k.p12","Content":"AAAA"}]}`, "")
	f.Add(`{"destinationConfiguration":{"URL":"https://x","Authentication":"BasicAuthentication","User":"u","Password":"pw-secret-value"},"authTokens":[{"error":"boom","expires_in":7}]}`, "")
	f.Fuzz(func(t *testing.T, body, user string) {
		var raw findResponse
		if json.Unmarshal([]byte(body), &raw) != nil {
			return
		}
		d, err := build("d", &raw, user, time.Unix(0, 0))
		if err != nil {
			if r, st := ReasonOf(err); r == "" || st == 0 {
				t.Fatalf("error without reason: %v", err)
			}
			for _, secret := range secretsOf(&raw) {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error repeats a secret: %v", err)
				}
			}
			return
		}
		if d.URL == nil || (d.URL.Scheme != "http" && d.URL.Scheme != "https") || d.URL.Host == "" {
			t.Fatalf("accepted URL %v", d.URL)
		}
		for k, vs := range d.Header {
			if !validHeaderName(k) {
				t.Fatalf("bad header name %q", k)
			}
			for _, v := range vs {
				if !validHeaderValue(v) {
					t.Fatalf("bad header value for %q", k)
				}
			}
		}
	})
}

// FuzzParseUserToken never panics, and a key is length-prefixed.
func FuzzParseUserToken(f *testing.F) {
	f.Add(jwt(map[string]any{"iss": "i", "zid": "z", "user_id": "u", "exp": 1}))
	f.Add(jwt(map[string]any{"iss": "i", "app_tid": "z", "user_uuid": "u"}))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		info, ok := ParseUserToken(tok)
		if !ok && info.Key != "" {
			t.Fatal("key without a token")
		}
	})
}

// secretsOf lists the secret values of an answer that occur in no field
// the error may quote (names, locations, the service's error texts).
func secretsOf(raw *findResponse) []string {
	var secrets, public []string
	for k, v := range raw.Config {
		sv, _ := v.(string)
		public = append(public, k)
		if k == "Password" || k == "KeyStorePassword" {
			secrets = append(secrets, sv)
		} else {
			public = append(public, sv)
		}
	}
	for _, t := range raw.AuthTokens {
		secrets = append(secrets, t.Value, t.HTTPHeader.Value)
		public = append(public, t.Error, t.Type, t.HTTPHeader.Key)
	}
	var out []string
	for _, s := range secrets {
		if len(s) < 6 {
			continue
		}
		quoted := false
		for _, p := range public {
			if strings.Contains(p, s) {
				quoted = true
			}
		}
		if !quoted {
			out = append(out, s)
		}
	}
	return out
}
