package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// tokenFixture is a running mock with its bindings and CA in files.
type tokenFixture struct {
	srv      *mockauth.Server
	dir      string
	vcapFile string
	caFile   string
}

func newTokenFixture(t *testing.T) *tokenFixture {
	t.Helper()
	clearBindingsEnv(t)
	for _, k := range []string{"CREDBROKER_BINDING", "CREDBROKER_TENANT", "CREDBROKER_ZID", "CREDBROKER_SCOPE",
		"CREDBROKER_GRANT", "CREDBROKER_ASSERTION", "CREDBROKER_ASSERTION_FILE", "CREDBROKER_USERNAME",
		"CREDBROKER_PASSWORD", "CREDBROKER_PASSWORD_FILE", "CREDBROKER_REFRESH_TOKEN", "CREDBROKER_REFRESH_TOKEN_FILE",
		"CREDBROKER_RESOLVE", "CREDBROKER_CA_FILE", "CREDBROKER_TIMEOUT", "CREDBROKER_RESOURCE", "CREDBROKER_APP_TID"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	srv, err := mockauth.Start(mockauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	f := &tokenFixture{srv: srv, dir: t.TempDir()}
	f.vcapFile = filepath.Join(f.dir, "vcap.json")
	f.caFile = filepath.Join(f.dir, "ca.crt")
	if err := os.WriteFile(f.vcapFile, srv.VCAPServices(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.caFile, srv.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// editVCAP writes a changed copy of the mock's bindings and returns its path.
func (f *tokenFixture) editVCAP(t *testing.T, name string, edit func(creds map[string]any)) string {
	t.Helper()
	var v map[string][]map[string]any
	if err := json.Unmarshal(f.srv.VCAPServices(), &v); err != nil {
		t.Fatal(err)
	}
	for _, list := range v {
		for _, b := range list {
			if b["name"] == name {
				edit(b["credentials"].(map[string]any))
			}
		}
	}
	raw, _ := json.Marshal(v)
	path := filepath.Join(t.TempDir(), "vcap.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *tokenFixture) run(args ...string) (int, string, string) {
	return runCmd(append([]string{"token", "--vcap-file", f.vcapFile, "--ca-file", f.caFile}, args...)...)
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	var m map[string]any
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenCommand(t *testing.T) {
	f := newTokenFixture(t)
	info := f.srv.Info()
	sub := info.Tenants[1]

	t.Run("secret binding prints the token alone", func(t *testing.T) {
		g := NewWithT(t)
		code, out, errOut := f.run()
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(errOut).To(BeEmpty())
		g.Expect(strings.Count(out, "\n")).To(Equal(1))
		g.Expect(jwtClaims(t, out)).To(HaveKeyWithValue("client_id", info.SecretClientID))
	})
	t.Run("x509 binding, tenant by subdomain, JSON", func(t *testing.T) {
		g := NewWithT(t)
		code, out, errOut := f.run("--binding", mockauth.X509BindingName, "--tenant", sub.Subdomain, "--json", "--scope", "uaa.resource")
		g.Expect(code).To(Equal(exitOK), errOut)
		var o map[string]any
		g.Expect(json.Unmarshal([]byte(out), &o)).To(Succeed())
		g.Expect(o).To(HaveKeyWithValue("auth", "mtls"))
		g.Expect(o).To(HaveKeyWithValue("binding", mockauth.X509BindingName))
		g.Expect(o).To(HaveKeyWithValue("scope", "uaa.resource"))
		g.Expect(o["token_url"]).To(HavePrefix("https://" + sub.Subdomain + "." + mockauth.CertUAADomain + ":"))
		g.Expect(o).To(HaveKeyWithValue("expires_in", BeNumerically("==", mockauth.DefaultTokenTTL.Seconds())))
		g.Expect(o).To(HaveKey("expires_at"))
		g.Expect(jwtClaims(t, o["access_token"].(string))).To(HaveKeyWithValue("zid", sub.ZoneID))
	})
	t.Run("tenant by zone id on both hosts", func(t *testing.T) {
		for _, b := range []string{mockauth.SecretBindingName, mockauth.X509BindingName} {
			g := NewWithT(t)
			code, out, errOut := f.run("--binding", b, "--zid", sub.ZoneID, "--json")
			g.Expect(code).To(Equal(exitOK), errOut)
			var o map[string]any
			g.Expect(json.Unmarshal([]byte(out), &o)).To(Succeed())
			g.Expect(o).To(HaveKeyWithValue("zone_id", sub.ZoneID))
			g.Expect(jwtClaims(t, o["access_token"].(string))).To(HaveKeyWithValue("zid", sub.ZoneID))
		}
	})
	t.Run("IAS binding", func(t *testing.T) {
		g := NewWithT(t)
		code, out, errOut := f.run("--binding", mockauth.IASBindingName, "--json")
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(out).To(ContainSubstring("/oauth2/token"))
	})
	t.Run("user grants: password, jwt-bearer, refresh_token", func(t *testing.T) {
		g := NewWithT(t)
		t.Setenv("CREDBROKER_PASSWORD", "alice-password")
		code, out, errOut := f.run("--grant", "password", "--username", "alice", "--json")
		g.Expect(code).To(Equal(exitOK), errOut)
		var o map[string]any
		g.Expect(json.Unmarshal([]byte(out), &o)).To(Succeed())
		user, refresh := o["access_token"].(string), o["refresh_token"].(string)
		g.Expect(jwtClaims(t, user)).To(HaveKeyWithValue("user_name", "alice"))
		os.Unsetenv("CREDBROKER_PASSWORD")

		af := filepath.Join(t.TempDir(), "assertion")
		g.Expect(os.WriteFile(af, []byte(user+"\n"), 0o600)).To(Succeed())
		code, out, errOut = f.run("--grant", "jwt-bearer", "--assertion-file", af)
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(jwtClaims(t, out)).To(HaveKeyWithValue("user_name", "alice"))

		t.Setenv("CREDBROKER_REFRESH_TOKEN", refresh)
		code, out, errOut = f.run("--grant", "refresh_token")
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(jwtClaims(t, out)).To(HaveKeyWithValue("grant_type", "refresh_token"))
	})
}

func TestTokenCommandBadInput(t *testing.T) {
	f := newTokenFixture(t)
	noKey := f.editVCAP(t, mockauth.X509BindingName, func(c map[string]any) { delete(c, "key") })
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tenant and zid", []string{"--tenant", "a", "--zid", "b"}, "--tenant and --zid"},
		{"unknown grant", []string{"--grant", "implicit"}, `--grant "implicit"`},
		{"password without password", []string{"--grant", "password", "--username", "alice"}, "CREDBROKER_PASSWORD"},
		{"jwt-bearer without assertion", []string{"--grant", "jwt-bearer"}, "--assertion"},
		{"refresh without token", []string{"--grant", "refresh_token"}, "CREDBROKER_REFRESH_TOKEN"},
		{"assertion with another grant", []string{"--assertion", "x.y.z"}, "only for --grant jwt-bearer"},
		{"missing assertion file", []string{"--grant", "jwt-bearer", "--assertion-file", "/nonexistent/a"}, "--assertion-file /nonexistent/a"},
		{"tenant not a subdomain", []string{"--tenant", "a.b"}, "not a subdomain"},
		{"bad resolve rule", []string{"--resolve", "nonsense"}, "--resolve"},
		{"missing CA file", []string{"--ca-file", "/nonexistent/ca.crt"}, "--ca-file /nonexistent/ca.crt"},
		{"unknown binding", []string{"--binding", "nope"}, "nope"},
		{"x509 binding without a key", []string{"--vcap-file", noKey, "--binding", mockauth.X509BindingName}, mockauth.X509BindingName},
		{"argument", []string{"extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, out, errOut := f.run(tc.args...)
			g.Expect(code).To(Equal(exitInput), errOut)
			g.Expect(out).To(BeEmpty())
			g.Expect(errOut).To(ContainSubstring(tc.want))
		})
	}
	t.Run("no bindings at all", func(t *testing.T) {
		code, _, errOut := runCmd("token")
		NewWithT(t).Expect(code).To(Equal(exitInput), errOut)
	})
	g := NewWithT(t)
	g.Expect(f.srv.Stats().TokenRequests).To(BeZero(), "bad input never reaches the server")
}

func TestTokenCommandRuntimeErrors(t *testing.T) {
	f := newTokenFixture(t)
	const planted = "planted-client-secret-0d9e7c"
	wrong := f.editVCAP(t, mockauth.SecretBindingName, func(c map[string]any) { c["clientsecret"] = planted })

	t.Run("refused credentials", func(t *testing.T) {
		g := NewWithT(t)
		code, out, errOut := runCmd("token", "--vcap-file", wrong, "--ca-file", f.caFile, "--binding", mockauth.SecretBindingName, "--log-level", "debug")
		g.Expect(code).To(Equal(exitRuntime))
		g.Expect(out).To(BeEmpty())
		g.Expect(errOut).To(ContainSubstring("status 401: unauthorized: Bad credentials"))
		g.Expect(errOut).NotTo(ContainSubstring(planted))
	})
	t.Run("unknown zone", func(t *testing.T) {
		g := NewWithT(t)
		code, _, errOut := f.run("--zid", "no-such-zone")
		g.Expect(code).To(Equal(exitRuntime))
		g.Expect(errOut).To(ContainSubstring("not_found"))
	})
	t.Run("assertion refused, never echoed", func(t *testing.T) {
		g := NewWithT(t)
		const assertion = "planted.assertion.4c1b9a"
		t.Setenv("CREDBROKER_ASSERTION", assertion)
		code, out, errOut := f.run("--grant", "jwt-bearer", "--log-level", "debug")
		g.Expect(code).To(Equal(exitRuntime))
		g.Expect(errOut).To(ContainSubstring("invalid_grant"))
		g.Expect(out + errOut).NotTo(ContainSubstring(assertion))
	})
	t.Run("untrusted server CA", func(t *testing.T) {
		g := NewWithT(t)
		code, _, errOut := runCmd("token", "--vcap-file", f.vcapFile)
		g.Expect(code).To(Equal(exitRuntime))
		g.Expect(errOut).To(ContainSubstring("--ca-file"))
	})
	t.Run("server down", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(f.srv.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503})).To(Succeed())
		defer f.srv.ClearFaults()
		code, _, errOut := f.run("--timeout", "2s")
		g.Expect(code).To(Equal(exitRuntime))
		g.Expect(errOut).To(ContainSubstring("unavailable"))
		g.Expect(errOut).To(ContainSubstring("503"))
	})
}
