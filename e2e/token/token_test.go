package token_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

// runToken runs `credbroker token` against the mock's bindings and CA and
// waits for it to exit with code.
func runToken(env harness.Env, code int, args ...string) (stdout, stderr []byte) {
	GinkgoHelper()
	all := append([]string{"token", "--ca-file", filepath.Join(mockDir, "ca.crt")}, args...)
	if env == nil {
		env = harness.Env{}
	}
	if _, ok := env["CREDBROKER_VCAP_FILE"]; !ok {
		env["CREDBROKER_VCAP_FILE"] = filepath.Join(mockDir, "vcap.json")
	}
	s := harness.Start(bin, env, all...)
	Eventually(s).WithTimeout(60*time.Second).Should(gexec.Exit(code), "credbroker %v", args)
	return s.Out.Contents(), s.Err.Contents()
}

func claims(tok string) map[string]any {
	GinkgoHelper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	Expect(parts).To(HaveLen(3), "a JWT")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	var m map[string]any
	Expect(json.Unmarshal(raw, &m)).To(Succeed())
	return m
}

// bindingSecrets adds every credential of the mock's bindings to s.
func bindingSecrets(s *harness.Secrets) {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join(mockDir, "vcap.json"))
	Expect(err).NotTo(HaveOccurred())
	var v map[string][]struct {
		Credentials map[string]any `json:"credentials"`
	}
	Expect(json.Unmarshal(raw, &v)).To(Succeed())
	for _, list := range v {
		for _, b := range list {
			for _, k := range []string{"clientsecret", "key"} {
				if val, ok := b.Credentials[k].(string); ok && val != "" {
					s.Add(k, val)
				}
			}
		}
	}
}

// editedVCAP writes a copy of the mock's bindings with one binding's
// credentials changed.
func editedVCAP(binding string, edit func(map[string]any)) string {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join(mockDir, "vcap.json"))
	Expect(err).NotTo(HaveOccurred())
	var v map[string][]map[string]any
	Expect(json.Unmarshal(raw, &v)).To(Succeed())
	for _, list := range v {
		for _, b := range list {
			if b["name"] == binding {
				edit(b["credentials"].(map[string]any))
			}
		}
	}
	out, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "vcap.json")
	Expect(os.WriteFile(path, out, 0o600)).To(Succeed())
	return path
}

var _ = Describe("credbroker token", func() {
	var secrets harness.Secrets

	BeforeEach(func() {
		secrets = harness.Secrets{}
		bindingSecrets(&secrets)
	})

	DescribeTable("prints a token for every binding kind and tenant form",
		func(binding func() string, tenantArgs func() []string, wantZone func() string, wantHost func() string, auth string) {
			args := append([]string{"--binding", binding(), "--json"}, tenantArgs()...)
			out, errOut := runToken(nil, 0, args...)
			var o map[string]any
			Expect(json.Unmarshal(out, &o)).To(Succeed(), string(out))
			Expect(o).To(HaveKeyWithValue("auth", auth))
			// With or without a port: `credbroker mock` serves on 443 when it may.
			Expect(o["token_url"]).To(MatchRegexp(`^https://%s(:\d+)?/`, regexp.QuoteMeta(wantHost())))
			Expect(o["expires_in"]).To(BeNumerically("==", 600))
			exp, err := time.Parse(time.RFC3339, o["expires_at"].(string))
			Expect(err).NotTo(HaveOccurred())
			Expect(exp).To(BeTemporally("~", time.Now().Add(10*time.Minute), 30*time.Second))
			tok := o["access_token"].(string)
			Expect(claims(tok)).To(HaveKeyWithValue("zid", wantZone()))
			secrets.Add("issued token", tok)
			secrets.ExpectNotIn(errOut)
		},
		Entry("secret, provider",
			func() string { return mock.SecretBinding }, func() []string { return nil },
			func() string { return mock.Tenants[0].ZoneID }, func() string { return mock.Tenants[0].Subdomain + ".authentication.localhost" }, "secret"),
		Entry("secret, tenant by subdomain",
			func() string { return mock.SecretBinding }, func() []string { return []string{"--tenant", mock.Tenants[1].Subdomain} },
			func() string { return mock.Tenants[1].ZoneID }, func() string { return mock.Tenants[1].Subdomain + ".authentication.localhost" }, "secret"),
		Entry("secret, tenant by zone",
			func() string { return mock.SecretBinding }, func() []string { return []string{"--zid", mock.Tenants[1].ZoneID} },
			func() string { return mock.Tenants[1].ZoneID }, func() string { return "authentication.localhost" }, "secret"),
		Entry("x509, provider",
			func() string { return mock.X509Binding }, func() []string { return nil },
			func() string { return mock.Tenants[0].ZoneID }, func() string { return mock.Tenants[0].Subdomain + ".authentication.cert.localhost" }, "mtls"),
		Entry("x509, tenant by subdomain",
			func() string { return mock.X509Binding }, func() []string { return []string{"--tenant", mock.Tenants[1].Subdomain} },
			func() string { return mock.Tenants[1].ZoneID }, func() string { return mock.Tenants[1].Subdomain + ".authentication.cert.localhost" }, "mtls"),
		Entry("x509, tenant by zone",
			func() string { return mock.X509Binding }, func() []string { return []string{"--zid", mock.Tenants[1].ZoneID} },
			func() string { return mock.Tenants[1].ZoneID }, func() string { return "authentication.cert.localhost" }, "mtls"),
	)

	// `bindings`, `token` and `run` judge a binding's certificate and key
	// with one parser (internal/pemx). Before, vcap (bindings, token)
	// required the leaf first and refused keys by Proc-Type only, while
	// certwatch (run) looked for the key's certificate anywhere in the chain
	// and refused keys by DEK-Info only.
	It("uses an x509 binding whose chain lists the CA before the leaf, as run does", func() {
		ca, err := os.ReadFile(filepath.Join(mockDir, "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		vcapFile := editedVCAP(mock.X509Binding, func(c map[string]any) {
			c["certificate"] = string(ca) + c["certificate"].(string)
		})
		env := harness.Env{"CREDBROKER_VCAP_FILE": vcapFile}
		out, errOut := runToken(env, 0, "--binding", mock.X509Binding, "--json")
		var o map[string]any
		Expect(json.Unmarshal(out, &o)).To(Succeed(), string(out))
		Expect(o).To(HaveKeyWithValue("auth", "mtls"))
		secrets.Add("issued token", o["access_token"].(string))
		secrets.ExpectNotIn(errOut)

		s := harness.Start(bin, env, "bindings", "--json")
		Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit(0))
		var views []map[string]any
		Expect(json.Unmarshal(s.Out.Contents(), &views)).To(Succeed())
		Expect(views).To(ContainElement(SatisfyAll(
			HaveKeyWithValue("name", mock.X509Binding),
			HaveKeyWithValue("auth", "mtls"),
			HaveKeyWithValue("problems", BeEmpty()),
		)))
	})

	It("refuses an x509 binding key that carries a DEK-Info header, as run does", func() {
		vcapFile := editedVCAP(mock.X509Binding, func(c map[string]any) {
			blk, _ := pem.Decode([]byte(c["key"].(string)))
			Expect(blk).NotTo(BeNil())
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil { // already PKCS#1 or SEC1
				blk.Headers = map[string]string{"DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}
				c["key"] = string(pem.EncodeToMemory(blk))
				return
			}
			legacy := &pem.Block{Headers: map[string]string{"DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}}
			switch k := k.(type) {
			case *rsa.PrivateKey:
				legacy.Type, legacy.Bytes = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
			case *ecdsa.PrivateKey:
				legacy.Type = "EC PRIVATE KEY"
				legacy.Bytes, err = x509.MarshalECPrivateKey(k)
				Expect(err).NotTo(HaveOccurred())
			default:
				Fail(fmt.Sprintf("unexpected key type %T", k))
			}
			c["key"] = string(pem.EncodeToMemory(legacy))
		})
		out, errOut := runToken(harness.Env{"CREDBROKER_VCAP_FILE": vcapFile}, 2, "--binding", mock.X509Binding)
		Expect(out).To(BeEmpty())
		Expect(string(errOut)).To(ContainSubstring("encrypted PEM keys are not supported"))
		secrets.ExpectNotIn(errOut)
	})

	It("prints the token alone on stdout and nothing on stderr", func() {
		out, errOut := runToken(nil, 0, "--binding", mock.X509Binding, "--scope", "uaa.resource")
		Expect(bytes.Count(out, []byte("\n"))).To(Equal(1))
		Expect(claims(string(out))).To(HaveKeyWithValue("scope", ContainElement("uaa.resource")))
		Expect(errOut).To(BeEmpty())
	})

	It("exchanges a user token (password, then jwt-bearer) without printing the assertion", func() {
		out, errOut := runToken(harness.Env{"CREDBROKER_PASSWORD": "alice-password"}, 0, "--grant", "password", "--username", "alice")
		user := strings.TrimSpace(string(out))
		Expect(claims(user)).To(HaveKeyWithValue("user_name", "alice"))
		secrets.Add("user token", user)
		secrets.ExpectNotIn(errOut)

		out, errOut = runToken(harness.Env{"CREDBROKER_ASSERTION": user}, 0, "--grant", "jwt-bearer", "--log-level", "debug")
		Expect(claims(string(out))).To(HaveKeyWithValue("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"))
		secrets.ExpectNotIn(errOut)

		// The same assertion for another tenant is refused: exit 1 with the
		// server's error, and the assertion (an issued token) is not echoed.
		out, errOut = runToken(harness.Env{"CREDBROKER_ASSERTION": user}, 1, "--grant", "jwt-bearer", "--tenant", mock.Tenants[1].Subdomain, "--log-level", "debug")
		Expect(out).To(BeEmpty())
		Expect(string(errOut)).To(ContainSubstring("invalid_grant"))
		secrets.ExpectNotIn(out, errOut)
	})

	It("exits 1 with the server's error when the credentials are refused", func() {
		planted := secrets.Plant("client secret")
		vcap := editedVCAP(mock.SecretBinding, func(c map[string]any) { c["clientsecret"] = planted })
		out, errOut := runToken(harness.Env{"CREDBROKER_VCAP_FILE": vcap}, 1, "--binding", mock.SecretBinding, "--log-level", "debug")
		Expect(out).To(BeEmpty())
		Expect(string(errOut)).To(ContainSubstring("status 401: unauthorized: Bad credentials"))
		secrets.ExpectNotIn(out, errOut)
	})

	It("exits 1 with a clear error while the token service fails", func() {
		body := `{"target":"token","status":503,"retry_after":1,"duration":"30s"}`
		resp, err := http.Post(mock.AdminURL+"/mock/faults", "application/json", strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		DeferCleanup(func() {
			req, _ := http.NewRequest(http.MethodDelete, mock.AdminURL+"/mock/faults", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
		_, errOut := runToken(nil, 1, "--timeout", "3s")
		Expect(string(errOut)).To(ContainSubstring("token service unavailable"))
		Expect(string(errOut)).To(ContainSubstring("status 503"))
		secrets.ExpectNotIn(errOut)
	})

	DescribeTable("exits 2 on bad input, before any request",
		func(env func() harness.Env, want string, args ...string) {
			out, errOut := runToken(env(), 2, args...)
			Expect(out).To(BeEmpty())
			Expect(string(errOut)).To(ContainSubstring(want))
			secrets.ExpectNotIn(errOut)
		},
		Entry("--tenant with --zid", func() harness.Env { return nil }, "--tenant and --zid", "--tenant", "a", "--zid", "b"),
		Entry("unknown grant", func() harness.Env { return nil }, "--grant", "--grant", "implicit"),
		Entry("jwt-bearer without an assertion", func() harness.Env { return nil }, "--assertion", "--grant", "jwt-bearer"),
		Entry("unknown binding", func() harness.Env { return nil }, `"nope"`, "--binding", "nope"),
		Entry("x509 binding with no key anywhere", func() harness.Env {
			return harness.Env{"CREDBROKER_VCAP_FILE": editedVCAP(mock.X509Binding, func(c map[string]any) { delete(c, "key") })}
		}, "xsuaa-x509", "--binding", "xsuaa-x509"),
		Entry("no binding source", func() harness.Env { return harness.Env{"CREDBROKER_VCAP_FILE": ""} }, "no bindings"),
	)
})
