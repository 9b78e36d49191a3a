package bindings_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
)

// view is one element of `bindings --json` (DESIGN.md).
type view struct {
	Name           string   `json:"name"`
	Label          string   `json:"label"`
	Plan           string   `json:"plan"`
	InstanceName   string   `json:"instance_name"`
	CredentialType string   `json:"credential_type"`
	Auth           string   `json:"auth"`
	TokenURL       string   `json:"token_url"`
	CertNotAfter   string   `json:"cert_not_after"`
	Kind           string   `json:"kind"`
	ServiceURL     string   `json:"service_url"`
	Proxy          string   `json:"proxy"`
	Problems       []string `json:"problems"`
}

// world is the planted binding set of one spec: VCAP JSON, the same
// bindings as a servicebinding.io root, and secrets to look for.
type world struct {
	dir     string
	secrets *harness.Secrets
	ca      *testpki.CA
	x509    *testpki.Leaf
	vcap    []byte
	vcapF   string
	root    string
	keyFile string // the key of a self-managed binding, outside the bindings
	selfCrt []byte
}

func newWorld() *world {
	w := &world{dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}, ca: testpki.NewCA()}
	w.x509 = w.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("x509-binding"))
	self := w.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("self-managed"))
	w.selfCrt = self.CertPEM()
	xsSecret := w.secrets.Plant("xsuaa client secret")
	iasSecret := w.secrets.Plant("ias client secret")
	dbPassword := w.secrets.Plant("database password")
	keyPEM := w.x509.KeyPEM(testpki.PKCS8)
	w.secrets.Add("x509 binding key", string(keyPEM))
	selfKey := self.KeyPEM(testpki.SEC1)
	w.secrets.Add("self-managed key", string(selfKey))
	w.keyFile = filepath.Join(w.dir, "self.key")
	Expect(os.WriteFile(w.keyFile, selfKey, 0o600)).To(Succeed())

	doc := map[string]any{
		"xsuaa": []any{
			map[string]any{"name": "app-xsuaa", "label": "xsuaa", "plan": "application", "instance_name": "app-inst", "tags": []string{"xsuaa"},
				"credentials": map[string]any{"clientid": "sb-app!t1", "clientsecret": xsSecret, "credential-type": "binding-secret",
					"url": "https://provider.authentication.localhost:8443", "uaadomain": "authentication.localhost", "xsappname": "app!t1"}},
			map[string]any{"name": "x509-xsuaa", "label": "xsuaa", "plan": "broker", "instance_name": "x509-inst",
				"credentials": map[string]any{"clientid": "sb-x509!b1", "credential-type": "x509",
					"url": "https://provider.authentication.localhost:8443",
					// literal \n escapes, as many bindings carry PEM
					"certificate": strings.ReplaceAll(string(w.x509.CertPEM()), "\n", `\n`),
					"key":         strings.ReplaceAll(string(keyPEM), "\n", `\n`)}},
		},
		"identity": []any{
			map[string]any{"name": "ias", "label": "identity", "plan": "application", "instance_name": "ias-inst",
				"credentials": map[string]any{"clientid": "ias-client", "clientsecret": iasSecret, "url": "https://tenant.accounts.localhost", "domains": []string{"accounts.localhost"}}},
		},
		"postgresql-db": []any{
			map[string]any{"name": "db", "label": "postgresql-db", "plan": "small", "credentials": map[string]any{"uri": "postgres://u:" + dbPassword + "@db:5432/x", "password": dbPassword}},
		},
	}
	var err error
	w.vcap, err = json.Marshal(doc)
	Expect(err).NotTo(HaveOccurred())
	w.vcapF = filepath.Join(w.dir, "vcap.json")
	Expect(os.WriteFile(w.vcapF, w.vcap, 0o600)).To(Succeed())

	// The same bindings as a Kubernetes service-binding root: servicebinding.io
	// files through ..data symlinks, a service-operator .metadata binding, and
	// a plain directory.
	w.root = filepath.Join(w.dir, "bindings")
	Expect(testpki.WriteKubernetesDir(filepath.Join(w.root, "app-xsuaa"), map[string][]byte{
		"type": []byte("xsuaa"), "plan": []byte("application"), "instance_name": []byte("app-inst"),
		"clientid": []byte("sb-app!t1"), "clientsecret": []byte(xsSecret), "credential-type": []byte("binding-secret"),
		"url": []byte("https://provider.authentication.localhost:8443"),
	})).To(Succeed())
	Expect(testpki.WriteKubernetesDir(filepath.Join(w.root, "x509-xsuaa"), map[string][]byte{
		"type": []byte("xsuaa"), "plan": []byte("broker"), "instance_name": []byte("x509-inst"),
		"clientid": []byte("sb-x509!b1"), "credential-type": []byte("x509"), "url": []byte("https://provider.authentication.localhost:8443"),
		"certificate": w.x509.CertPEM(), "key": keyPEM,
	})).To(Succeed())
	writeFiles(filepath.Join(w.root, "ias"), map[string]string{
		".metadata": `{"metaDataProperties":[{"name":"type","sourceName":"label","format":"text"},{"name":"plan","format":"text"},{"name":"instance_name","format":"text"}],
		  "credentialProperties":[{"name":"credentials","sourceName":"credentials.json","format":"json","container":true}]}`,
		"label": "identity", "plan": "application", "instance_name": "ias-inst",
		"credentials.json": `{"clientid":"ias-client","clientsecret":"` + iasSecret + `","url":"https://tenant.accounts.localhost"}`,
	})
	writeFiles(filepath.Join(w.root, "db"), map[string]string{"type": "postgresql-db", "plan": "small", "password": dbPassword})
	return w
}

func writeFiles(dir string, files map[string]string) {
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	for n, d := range files {
		Expect(os.WriteFile(filepath.Join(dir, n), []byte(d), 0o600)).To(Succeed())
	}
}

// run executes credbroker and returns the finished session.
func run(env harness.Env, args ...string) *gexec.Session {
	s := harness.Start(bin, env, args...)
	Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit())
	return s
}

func parseJSON(s *gexec.Session) []view {
	var out []view
	Expect(json.Unmarshal(s.Out.Contents(), &out)).To(Succeed(), string(s.Out.Contents()))
	return out
}

func byName(vs []view) map[string]view {
	m := map[string]view{}
	for _, v := range vs {
		m[v.Name] = v
	}
	return m
}

var _ = Describe("credbroker bindings", func() {
	var w *world
	BeforeEach(func() { w = newWorld() })

	expectWorld := func(vs []view) {
		GinkgoHelper()
		m := byName(vs)
		Expect(m).To(HaveLen(4))
		Expect(m["app-xsuaa"]).To(Equal(view{Name: "app-xsuaa", Label: "xsuaa", Plan: "application", InstanceName: "app-inst",
			CredentialType: "binding-secret", Auth: "secret", TokenURL: "https://provider.authentication.localhost:8443/oauth/token", Problems: []string{}}))
		Expect(m["x509-xsuaa"]).To(Equal(view{Name: "x509-xsuaa", Label: "xsuaa", Plan: "broker", InstanceName: "x509-inst",
			CredentialType: "x509", Auth: "mtls", TokenURL: "https://provider.authentication.cert.localhost:8443/oauth/token",
			CertNotAfter: w.x509.Cert.NotAfter.UTC().Format(time.RFC3339), Problems: []string{}}))
		Expect(m["ias"]).To(Equal(view{Name: "ias", Label: "identity", Plan: "application", InstanceName: "ias-inst",
			Auth: "secret", TokenURL: "https://tenant.accounts.localhost/oauth2/token", Problems: []string{}}))
		Expect(m["db"]).To(Equal(view{Name: "db", Label: "postgresql-db", Plan: "small", Auth: "none", Problems: []string{}}))
	}

	DescribeTable("reads every source, as a table and as JSON",
		func(mk func(w *world) (harness.Env, []string), source func(w *world) string) {
			env, args := mk(w)
			s := run(env, append([]string{"bindings", "--json"}, args...)...)
			Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
			expectWorld(parseJSON(s))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())

			t := run(env, append([]string{"bindings"}, args...)...)
			Expect(t).To(gexec.Exit(0))
			out := string(t.Out.Contents())
			Expect(out).To(ContainSubstring("Bindings from " + source(w) + ":"))
			Expect(out).To(MatchRegexp(`(?m)^NAME\s+LABEL\s+PLAN\s+INSTANCE\s+CREDENTIAL-TYPE\s+AUTH\s+TOKEN-URL\s+CERT-NOT-AFTER\s+STATUS$`))
			Expect(out).To(MatchRegexp(`(?m)^x509-xsuaa\s+xsuaa\s+broker\s+x509-inst\s+x509\s+mtls\s+https://provider\.authentication\.cert\.localhost:8443/oauth/token\s+\S+Z\s+ok$`))
			Expect(out).To(MatchRegexp(`(?m)^db\s+postgresql-db\s+small\s+-\s+-\s+none\s+-\s+-\s+ok$`))
			w.secrets.ExpectNotIn(t.Out.Contents(), t.Err.Contents())
		},
		Entry("--vcap-file", func(w *world) (harness.Env, []string) { return nil, []string{"--vcap-file", w.vcapF} },
			func(w *world) string { return "file " + w.vcapF }),
		Entry("CREDBROKER_VCAP_FILE", func(w *world) (harness.Env, []string) { return harness.Env{"CREDBROKER_VCAP_FILE": w.vcapF}, nil },
			func(w *world) string { return "file " + w.vcapF }),
		Entry("VCAP_SERVICES (no VCAP_APPLICATION)", func(w *world) (harness.Env, []string) { return harness.Env{"VCAP_SERVICES": string(w.vcap)}, nil },
			func(*world) string { return "VCAP_SERVICES" }),
		Entry("VCAP_SERVICES_FILE_PATH", func(w *world) (harness.Env, []string) {
			return harness.Env{"VCAP_SERVICES_FILE_PATH": w.vcapF}, nil
		}, func(w *world) string { return "file " + w.vcapF }),
		Entry("--bindings-dir (..data symlinks, .metadata, plain files)", func(w *world) (harness.Env, []string) { return nil, []string{"--bindings-dir", w.root} },
			func(w *world) string { return "dir " + w.root }),
		Entry("SERVICE_BINDING_ROOT", func(w *world) (harness.Env, []string) { return harness.Env{"SERVICE_BINDING_ROOT": w.root}, nil },
			func(w *world) string { return "dir " + w.root }),
	)

	It("takes the first source in DESIGN.md's order and says which it ignored", func() {
		other := filepath.Join(w.dir, "other.json")
		Expect(os.WriteFile(other, []byte(`{"xsuaa":[{"name":"only-this","plan":"application","credentials":{"clientid":"c","clientsecret":"`+w.secrets.Plant("other secret")+`","url":"https://x.authentication.localhost"}}]}`), 0o600)).To(Succeed())
		s := run(harness.Env{"VCAP_SERVICES": string(w.vcap), "SERVICE_BINDING_ROOT": w.root}, "bindings", "--json", "--vcap-file", other)
		Expect(s).To(gexec.Exit(0))
		vs := parseJSON(s)
		Expect(vs).To(HaveLen(1), "sources are not merged")
		Expect(vs[0].Name).To(Equal("only-this"))
		Expect(string(s.Err.Contents())).To(ContainSubstring("ignored=VCAP_SERVICES,SERVICE_BINDING_ROOT"))

		s = run(harness.Env{"VCAP_SERVICES": string(w.vcap), "VCAP_SERVICES_FILE_PATH": other}, "bindings", "--json")
		Expect(s).To(gexec.Exit(0))
		Expect(parseJSON(s)).To(HaveLen(4), "VCAP_SERVICES before VCAP_SERVICES_FILE_PATH")
	})

	It("gives a self-managed x509 binding its key from --key-file or CREDBROKER_KEY_FILE, and says so when there is none", func() {
		doc := `{"xsuaa":[{"name":"my-xsuaa","plan":"application","credentials":{"clientid":"c","credential-type":"x509","url":"https://p.authentication.localhost","certificate":` + jsonString(string(w.selfCrt)) + `}}]}`
		f := filepath.Join(w.dir, "self.json")
		Expect(os.WriteFile(f, []byte(doc), 0o600)).To(Succeed())

		s := run(nil, "bindings", "--vcap-file", f)
		Expect(s).To(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring(`vcap: file ` + f + `: binding "my-xsuaa": field "key": no private key: credential-type x509 but no "key" and no --key-file`))

		for _, env := range []harness.Env{nil, {"CREDBROKER_KEY_FILE": w.keyFile}} {
			args := []string{"bindings", "--json", "--vcap-file", f}
			if env == nil {
				args = append(args, "--key-file", w.keyFile)
			}
			s = run(env, args...)
			Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
			Expect(parseJSON(s)[0].Auth).To(Equal("mtls"))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		}

		// A key file next to the binding's files in a binding directory.
		dir := filepath.Join(w.dir, "selfroot", "my-xsuaa")
		key, err := os.ReadFile(w.keyFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(testpki.WriteKubernetesDir(dir, map[string][]byte{"type": []byte("xsuaa"), "clientid": []byte("c"), "credential-type": []byte("x509"),
			"url": []byte("https://p.authentication.localhost"), "certificate": w.selfCrt, "key": key})).To(Succeed())
		s = run(nil, "bindings", "--json", "--bindings-dir", filepath.Dir(dir))
		Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
		Expect(parseJSON(s)[0].Auth).To(Equal("mtls"))
	})

	It("never prints a planted secret, even at debug level and in JSON logs", func() {
		for _, args := range [][]string{
			{"bindings", "--log-level", "debug", "--vcap-file", w.vcapF},
			{"bindings", "--json", "--log-level", "debug", "--log-format", "json", "--bindings-dir", w.root},
			{"bindings", "--log-level", "debug", "--key-file", w.keyFile, "--vcap-file", w.vcapF},
		} {
			s := run(harness.Env{"VCAP_SERVICES": string(w.vcap)}, args...)
			Expect(s).To(gexec.Exit(0))
			Expect(string(s.Err.Contents())).To(Or(ContainSubstring("level=DEBUG"), ContainSubstring(`"level":"DEBUG"`)))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		}
	})

	Describe("destination and connectivity bindings", func() {
		var (
			svcVCAP, svcRoot, destSecret string
			connLeaf                     *testpki.Leaf
		)
		BeforeEach(func() {
			destSecret = w.secrets.Plant("destination client secret")
			connLeaf = w.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("connectivity-client"))
			connKey := connLeaf.KeyPEM(testpki.PKCS8)
			w.secrets.Add("connectivity key", string(connKey))
			doc := map[string]any{
				"destination": []any{map[string]any{"name": "my-destination", "label": "destination", "plan": "lite", "instance_name": "dest-inst",
					"credentials": map[string]any{"clientid": "sb-dest!b1", "clientsecret": destSecret, "url": "https://provider.authentication.localhost:8443",
						"uaadomain": "authentication.localhost", "uri": "https://destination-configuration.cfapps.localhost"}}},
				"connectivity": []any{map[string]any{"name": "my-connectivity", "label": "connectivity", "plan": "lite", "instance_name": "conn-inst",
					"credentials": map[string]any{"clientid": "sb-conn!b2", "credential-type": "x509", "url": "https://provider.authentication.localhost:8443",
						"certificate": string(connLeaf.CertPEM()), "key": string(connKey),
						"onpremise_proxy_host": "connectivityproxy.internal.cf.localhost", "onpremise_proxy_http_port": "20003", "onpremise_proxy_port": "20004"}}},
			}
			b, err := json.Marshal(doc)
			Expect(err).NotTo(HaveOccurred())
			svcVCAP = filepath.Join(w.dir, "services.json")
			Expect(os.WriteFile(svcVCAP, b, 0o600)).To(Succeed())
			// Kyma: the connectivity binding has token_service_url and no
			// proxy host.
			svcRoot = filepath.Join(w.dir, "svcroot")
			Expect(testpki.WriteKubernetesDir(filepath.Join(svcRoot, "my-destination"), map[string][]byte{
				"type": []byte("destination"), "plan": []byte("lite"), "instance_name": []byte("dest-inst"),
				"clientid": []byte("sb-dest!b1"), "clientsecret": []byte(destSecret), "url": []byte("https://provider.authentication.localhost:8443"),
				"uri": []byte("https://destination-configuration.cfapps.localhost"),
			})).To(Succeed())
			Expect(testpki.WriteKubernetesDir(filepath.Join(svcRoot, "my-connectivity"), map[string][]byte{
				"type": []byte("connectivity"), "plan": []byte("connectivity_proxy"), "instance_name": []byte("conn-inst"),
				"clientid": []byte("sb-conn!b2"), "credential-type": []byte("x509"), "token_service_url": []byte("https://provider.authentication.localhost:8443/oauth/token"),
				"certificate": connLeaf.CertPEM(), "key": connKey,
			})).To(Succeed())
		})

		It("shows what they are — kind, credential, token URL, service URL or proxy — with no secret, from VCAP and from a binding directory", func() {
			s := run(nil, "bindings", "--json", "--vcap-file", svcVCAP)
			Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
			m := byName(parseJSON(s))
			Expect(m).To(HaveLen(2))
			Expect(m["my-destination"]).To(Equal(view{Name: "my-destination", Label: "destination", Plan: "lite", InstanceName: "dest-inst",
				Auth: "secret", TokenURL: "https://provider.authentication.localhost:8443/oauth/token",
				Kind: "destination", ServiceURL: "https://destination-configuration.cfapps.localhost", Problems: []string{}}))
			Expect(m["my-connectivity"]).To(Equal(view{Name: "my-connectivity", Label: "connectivity", Plan: "lite", InstanceName: "conn-inst",
				CredentialType: "x509", Auth: "mtls", TokenURL: "https://provider.authentication.cert.localhost:8443/oauth/token",
				CertNotAfter: connLeaf.Cert.NotAfter.UTC().Format(time.RFC3339), Kind: "connectivity",
				Proxy: "connectivityproxy.internal.cf.localhost:20003", Problems: []string{}}))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())

			t := run(nil, "bindings", "--vcap-file", svcVCAP)
			Expect(t).To(gexec.Exit(0))
			out := string(t.Out.Contents())
			Expect(out).To(MatchRegexp(`(?m)^my-destination\s+destination\s+lite\s+dest-inst\s+-\s+secret\s+https://provider\.authentication\.localhost:8443/oauth/token\s+-\s+ok$`))
			Expect(out).To(MatchRegexp(`(?m)^my-connectivity\s+connectivity\s+lite\s+conn-inst\s+x509\s+mtls\s+https://provider\.authentication\.cert\.localhost:8443/oauth/token\s+\S+Z\s+ok$`))
			Expect(out).To(MatchRegexp(`(?m)^NAME\s+KIND\s+SERVICE-URL\s+PROXY$`))
			Expect(out).To(MatchRegexp(`(?m)^my-destination\s+destination\s+https://destination-configuration\.cfapps\.localhost\s+-$`))
			Expect(out).To(MatchRegexp(`(?m)^my-connectivity\s+connectivity\s+-\s+connectivityproxy\.internal\.cf\.localhost:20003$`))
			w.secrets.ExpectNotIn(t.Out.Contents(), t.Err.Contents())

			// Kyma's layout: the proxy comes from the sidecar's config.
			s = run(nil, "bindings", "--json", "--log-level", "debug", "--bindings-dir", svcRoot)
			Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
			m = byName(parseJSON(s))
			Expect(m["my-destination"].Kind).To(Equal("destination"))
			Expect(m["my-destination"].Auth).To(Equal("secret"))
			Expect(m["my-connectivity"]).To(Equal(view{Name: "my-connectivity", Label: "connectivity", Plan: "connectivity_proxy", InstanceName: "conn-inst",
				CredentialType: "x509", Auth: "mtls", TokenURL: "https://provider.authentication.cert.localhost:8443/oauth/token",
				CertNotAfter: connLeaf.Cert.NotAfter.UTC().Format(time.RFC3339), Kind: "connectivity", Problems: []string{}}))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			t = run(nil, "bindings", "--bindings-dir", svcRoot)
			Expect(t).To(gexec.Exit(0))
			Expect(string(t.Out.Contents())).To(MatchRegexp(`(?m)^my-connectivity\s+connectivity\s+-\s+- \(the binding names none: destinations\.connectivity_proxy, by default connectivity-proxy\.kyma-system\.svc\.cluster\.local:20003\)$`))
			w.secrets.ExpectNotIn(t.Out.Contents(), t.Err.Contents())
		})

		It("names the problem of a destination binding it could not use, and exits 2", func() {
			f := filepath.Join(w.dir, "nouri.json")
			Expect(os.WriteFile(f, []byte(`{"destination":[{"name":"no-uri","label":"destination","credentials":{"clientid":"c","clientsecret":"`+destSecret+`","url":"https://p.authentication.localhost"}}]}`), 0o600)).To(Succeed())
			s := run(nil, "bindings", "--json", "--vcap-file", f)
			Expect(s).To(gexec.Exit(2))
			vs := parseJSON(s)
			Expect(vs).To(HaveLen(1))
			Expect(vs[0].Kind).To(Equal("destination"))
			Expect(vs[0].Problems).To(ConsistOf(ContainSubstring(`field "uri": missing field`)))
			Expect(string(s.Err.Contents())).To(ContainSubstring(`binding "no-uri" (destination): field "uri": missing field`))
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		})
	})

	Describe("bad input: exit 2, a message naming source, binding and field, no secret", func() {
		var secret string
		BeforeEach(func() { secret = w.secrets.Plant("secret next to bad input") })

		vcapWith := func(entry string) string {
			f := filepath.Join(w.dir, "bad.json")
			Expect(os.WriteFile(f, []byte(`{"xsuaa":[`+entry+`]}`), 0o600)).To(Succeed())
			return f
		}
		expectBad := func(want string, args ...string) {
			GinkgoHelper()
			for _, extra := range [][]string{nil, {"--json", "--log-level", "debug"}} {
				s := run(nil, append(append([]string{"bindings"}, args...), extra...)...)
				Expect(s).To(gexec.Exit(2))
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			}
		}
		creds := func(extra string) string {
			return `{"clientid":"c","clientsecret":"` + secret + `","url":"https://p.authentication.localhost"` + extra + `}`
		}

		It("malformed JSON, with the byte offset", func() {
			f := filepath.Join(w.dir, "bad.json")
			doc := `{"xsuaa":[{"name":"a","credentials":{"clientsecret":"` + secret + `",}}]}`
			Expect(os.WriteFile(f, []byte(doc), 0o600)).To(Succeed())
			offset := strings.Index(doc, ",}") + 2 // encoding/json reports the offset after the offending byte
			expectBad(fmt.Sprintf("vcap: file %s (byte %d): malformed input: invalid character '}' looking for beginning of object key string", f, offset), "--vcap-file", f)
		})
		It("a binding without credentials", func() {
			expectBad(`binding "empty": field "credentials": no credentials`, "--vcap-file", vcapWith(`{"name":"empty","plan":"application"}`))
		})
		It("an unknown credential type", func() {
			expectBad(`binding "odd": field "credential-type": unknown credential-type`, "--vcap-file", vcapWith(`{"name":"odd","credentials":`+creds(`,"credential-type":"kerberos"`)+`}`))
		})
		It("duplicate binding names", func() {
			f := vcapWith(`{"name":"twice","credentials":` + creds("") + `},{"name":"twice","credentials":` + creds("") + `}`)
			expectBad(`vcap: file `+f+`: binding "twice": field "name": duplicate binding name: 2 bindings are called "twice"`, "--vcap-file", f)
		})
		It("an unreadable file", func() {
			f := filepath.Join(w.dir, "absent.json")
			expectBad(`vcap: file `+f+`: unreadable: stat: no such file or directory`, "--vcap-file", f)
		})
		It("an unreadable binding root", func() {
			d := filepath.Join(w.dir, "no-such-root")
			expectBad(`vcap: dir `+d+`: unreadable`, "--bindings-dir", d)
		})
		It("an unreadable --key-file", func() {
			expectBad(`field "key": unreadable`, "--vcap-file", w.vcapF, "--key-file", filepath.Join(w.dir, "absent.key"))
		})
		It("a PEM that does not parse", func() {
			expectBad(`binding "badpem": field "certificate": certificate does not parse`,
				"--vcap-file", vcapWith(`{"name":"badpem","credentials":`+creds(`,"credential-type":"x509","certificate":"-----BEGIN CERTIFICATE-----\n`+secret+`\n-----END CERTIFICATE-----","key":"x"`)+`}`))
		})
		It("a key for another certificate", func() {
			other := w.ca.Issue(testpki.ClientAuth())
			w.secrets.Add("other key", string(other.KeyPEM(testpki.PKCS8)))
			expectBad(`binding "mismatch": field "key": private key does not match the certificate`,
				"--vcap-file", vcapWith(`{"name":"mismatch","credentials":`+creds(`,"credential-type":"x509","certificate":`+jsonString(string(w.x509.CertPEM()))+`,"key":`+jsonString(string(other.KeyPEM(testpki.PKCS8))))+`}`))
		})
		It("an expired certificate, with its dates", func() {
			old := w.ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
			w.secrets.Add("expired key", string(old.KeyPEM(testpki.PKCS8)))
			expectBad(`binding "old": field "certificate": certificate expired: not after `+old.Cert.NotAfter.UTC().Format(time.RFC3339),
				"--vcap-file", vcapWith(`{"name":"old","credentials":`+creds(`,"credential-type":"x509","certificate":`+jsonString(string(old.CertPEM()))+`,"key":`+jsonString(string(old.KeyPEM(testpki.PKCS8))))+`}`))
		})
		It("no source at all", func() {
			expectBad(`no bindings: set --vcap-file, VCAP_SERVICES, VCAP_SERVICES_FILE_PATH, --bindings-dir or SERVICE_BINDING_ROOT`)
		})
	})
})

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
