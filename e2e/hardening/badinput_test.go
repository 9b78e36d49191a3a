package hardening_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// hostileWorld is one spec's planted secrets and scratch directory.
type hostileWorld struct {
	dir     string
	secrets *harness.Secrets
	secret  string // a client secret next to the hostile part
}

func newHostileWorld() *hostileWorld {
	w := &hostileWorld{dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}}
	w.secret = w.secrets.Plant("client secret")
	return w
}

func (w *hostileWorld) file(name string, data []byte) string {
	GinkgoHelper()
	p := filepath.Join(w.dir, name)
	Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
	Expect(os.WriteFile(p, data, 0o600)).To(Succeed())
	return p
}

func (w *hostileWorld) fifo(name string) string {
	GinkgoHelper()
	p := filepath.Join(w.dir, name)
	Expect(syscall.Mkfifo(p, 0o600)).To(Succeed())
	return p
}

// creds is a usable secret binding's credentials with extra fields (JSON).
func (w *hostileWorld) creds(extra string) string {
	return `{"clientid":"sb-app!t1","clientsecret":"` + w.secret + `","url":"https://provider.authentication.localhost","uaadomain":"authentication.localhost","xsappname":"app!t1"` + extra + `}`
}

// hugeVCAP is a syntactically valid VCAP_SERVICES of about n bytes.
func (w *hostileWorld) hugeVCAP(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"xsuaa":[{"name":"huge","label":"xsuaa","plan":"application","credentials":` + w.creds(`,"pad":"`))
	b.Write(bytes.Repeat([]byte("A"), n))
	b.WriteString(`"}}]}`)
	return b.Bytes()
}

func jsonStr(s string) string {
	b, err := json.Marshal(s)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

var _ = Describe("bad input to every command", func() {
	var w *hostileWorld
	BeforeEach(func() { w = newHostileWorld() })

	// expectBad runs `bindings` (table, and JSON at debug level) and wants
	// exit 2 with every substring in stderr.
	expectBad := func(env harness.Env, args []string, want ...string) {
		GinkgoHelper()
		// CI runs the variant with the most output (JSON, debug logs, JSON
		// log lines); the soak run adds the table.
		variants := [][]string{{"--json", "--log-level", "debug", "--log-format", "json"}}
		if soak() {
			variants = append(variants, nil)
		}
		for _, extra := range variants {
			s := runBounded(w.secrets, 60*time.Second, env, append(append([]string{"bindings"}, args...), extra...)...)
			Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
			for _, sub := range want {
				Expect(string(s.Err.Contents())).To(ContainSubstring(sub))
			}
		}
	}

	Describe("credbroker bindings with hostile VCAP_SERVICES", func() {
		It("a 50 MiB file is refused by size, from --vcap-file and VCAP_SERVICES_FILE_PATH", func() {
			f := w.file("huge.json", w.hugeVCAP(50<<20))
			expectBad(nil, []string{"--vcap-file", f}, "vcap: file "+f+": unreadable: larger than")
			expectBad(harness.Env{"VCAP_SERVICES_FILE_PATH": f}, nil, "vcap: file "+f+": unreadable: larger than")
		})

		It("100,000 levels of [ and of {\"a\": are malformed input with the byte offset, from a file and the variable", func() {
			deep := strings.Repeat("[", 100_000)
			f := w.file("deep.json", []byte(deep))
			expectBad(nil, []string{"--vcap-file", f}, "vcap: file "+f+" (byte ", "malformed input", "exceeded max depth")
			expectBad(harness.Env{"VCAP_SERVICES": deep}, nil, "vcap: VCAP_SERVICES (byte ", "malformed input")
			objs := w.file("deep-obj.json", []byte(`{"xsuaa":[{"name":"n","credentials":`+strings.Repeat(`{"a":`, 100_000)))
			expectBad(nil, []string{"--vcap-file", objs}, "vcap: file "+objs+" (byte ", "malformed input")
		})

		DescribeTable("wrong JSON types name the binding and the field",
			func(doc func(w *hostileWorld) string, want ...string) {
				f := w.file("types.json", []byte(doc(w)))
				expectBad(nil, []string{"--vcap-file", f}, append([]string{"vcap: file " + f}, want...)...)
			},
			Entry("the document is an array", func(w *hostileWorld) string { return `[1,2,3]` }, "malformed input"),
			Entry("the document is a string", func(w *hostileWorld) string { return `"xsuaa"` }, "malformed input"),
			Entry("a service is an object", func(w *hostileWorld) string { return `{"xsuaa":{"name":"x"}}` }, `field "xsuaa"`, "want an array of bindings"),
			Entry("a binding is a number", func(w *hostileWorld) string { return `{"xsuaa":[42]}` }, `xsuaa[0]`, "malformed input"),
			Entry("the name is a number", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":7,"label":"xsuaa","credentials":` + w.creds("") + `}]}`
			}, `binding "xsuaa[0]"`, `"name" is a JSON number, want string`),
			Entry("credentials are an array", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"arr","label":"xsuaa","credentials":["` + w.secret + `"]}]}`
			}, `binding "arr"`, "credentials"),
			Entry("the url is an array", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"u","label":"xsuaa","plan":"application","credentials":` + w.creds(`,"url":["https://a.localhost"]`) + `}]}`
			}, `binding "u"`, `field "url"`, "malformed input"),
			Entry("the url is an object", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"u","label":"xsuaa","plan":"application","credentials":` + w.creds(`,"url":{"host":"a"}`) + `}]}`
			}, `binding "u"`, `field "url"`),
			Entry("the url carries user information", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"u","label":"xsuaa","plan":"application","credentials":` + w.creds(`,"url":"https://user:`+w.secret+`@a.localhost"`) + `}]}`
			}, `binding "u"`, `field "url"`, "user information"),
			Entry("a certificate is a number", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"c","label":"xsuaa","credentials":` + w.creds(`,"credential-type":"x509","certificate":12345,"key":"k"`) + `}]}`
			}, `binding "c"`, `field "certificate"`),
			Entry("tags are a number", func(w *hostileWorld) string {
				return `{"xsuaa":[{"name":"t","label":"xsuaa","tags":5,"credentials":` + w.creds("") + `}]}`
			}, `binding "xsuaa[0]"`, `"tags" is a JSON number`),
		)

		It("a raw NUL byte in a string is malformed input with its offset", func() {
			doc := `{"xsuaa":[{"name":"n","credentials":{"clientid":"a` + "\x00" + `b","clientsecret":"` + w.secret + `"}}]}`
			f := w.file("nul.json", []byte(doc))
			expectBad(nil, []string{"--vcap-file", f}, "vcap: file "+f+" (byte ", "malformed input")
		})

		It("invalid UTF-8, escaped NULs and control bytes never reach the terminal raw", func() {
			doc := "{\"xsuaa\":[{\"name\":\"bad\xff\xfe\\u0000\\u001b[2J\\r\\nFORGED\",\"label\":\"xsuaa\",\"plan\":\"application\\u0007\"," +
				"\"credentials\":" + w.creds(`,"clientid":"id\u0000\u001b]0;title\u0007"`) + "}]}"
			f := w.file("utf8.json", []byte(doc))
			for _, args := range [][]string{{"bindings", "--vcap-file", f}, {"bindings", "--vcap-file", f, "--json"}, {"bindings", "--vcap-file", f, "--log-level", "debug", "--log-format", "json"}} {
				s := runBounded(w.secrets, 30*time.Second, nil, args...)
				Expect(s.ExitCode()).To(BeNumerically("<=", 2))
				for _, out := range [][]byte{s.Out.Contents(), s.Err.Contents()} {
					Expect(utf8.Valid(out)).To(BeTrue(), "output is valid UTF-8: %q", out)
					for _, c := range []byte{0x00, 0x1b, 0x07, '\r'} {
						Expect(bytes.IndexByte(out, c)).To(Equal(-1), "raw byte %#x in %q", c, out)
					}
					for _, line := range strings.Split(string(out), "\n") {
						Expect(line).NotTo(HavePrefix("FORGED"), "a binding name cannot forge an output line")
					}
				}
			}
		})

		It("a FIFO as the VCAP file or key file is refused at once instead of blocking", func() {
			fifo := w.fifo("vcap.fifo")
			expectBad(nil, []string{"--vcap-file", fifo}, "vcap: file "+fifo+": unreadable: not a regular file")
			expectBad(harness.Env{"VCAP_SERVICES_FILE_PATH": fifo}, nil, "vcap: file "+fifo+": unreadable")
			good := w.file("good.json", []byte(`{"xsuaa":[{"name":"x","label":"xsuaa","plan":"application","credentials":`+w.creds("")+`}]}`))
			expectBad(nil, []string{"--vcap-file", good, "--key-file", fifo}, `field "key": unreadable`)
		})

		It("a directory, a symlink loop and /dev/zero as the VCAP file", func() {
			loop := filepath.Join(w.dir, "loop.json")
			Expect(os.Symlink(loop, loop)).To(Succeed())
			expectBad(nil, []string{"--vcap-file", w.dir}, "vcap: file "+w.dir+": unreadable")
			expectBad(nil, []string{"--vcap-file", loop}, "vcap: file "+loop+": unreadable", "too many levels of symbolic links")
			expectBad(nil, []string{"--vcap-file", "/dev/zero"}, "vcap: file /dev/zero: unreadable")
		})
	})

	Describe("credbroker bindings with a hostile binding root", func() {
		var root string
		BeforeEach(func() {
			root = filepath.Join(w.dir, "bindings")
			// One good binding, so that every failure is about the hostile one.
			Expect(testpki.WriteKubernetesDir(filepath.Join(root, "good"), map[string][]byte{
				"type": []byte("xsuaa"), "clientid": []byte("sb-good!t1"), "clientsecret": []byte(w.secret),
				"url": []byte("https://provider.authentication.localhost"),
			})).To(Succeed())
		})

		It("a binding that is a symlink loop is a problem of that binding", func() {
			Expect(os.Symlink(filepath.Join(root, "loop"), filepath.Join(root, "loop"))).To(Succeed())
			expectBad(nil, []string{"--bindings-dir", root}, "vcap: dir "+filepath.Join(root, "loop")+`: binding "loop"`, "too many levels of symbolic links")
		})

		It("a root that is a symlink loop, a FIFO or a file", func() {
			loop := filepath.Join(w.dir, "rootloop")
			Expect(os.Symlink(loop, loop)).To(Succeed())
			expectBad(nil, []string{"--bindings-dir", loop}, "vcap: dir "+loop+": unreadable")
			fifo := w.fifo("root.fifo")
			expectBad(harness.Env{"SERVICE_BINDING_ROOT": fifo}, nil, "vcap: dir "+fifo+": unreadable")
			f := w.file("plain", []byte("x"))
			expectBad(nil, []string{"--bindings-dir", f}, "vcap: dir "+f+": unreadable")
		})

		It("a dangling ..data (a rotation that never finished) and credential files that are loops, FIFOs or directories", func() {
			b := filepath.Join(root, "broken")
			Expect(os.MkdirAll(b, 0o755)).To(Succeed())
			Expect(os.Symlink("..2026_01_01_00_00_00.gone", filepath.Join(b, "..data"))).To(Succeed())
			for _, n := range []string{"type", "clientid", "clientsecret", "url"} {
				Expect(os.Symlink(filepath.Join("..data", n), filepath.Join(b, n))).To(Succeed())
			}
			c := filepath.Join(root, "weird")
			Expect(os.MkdirAll(filepath.Join(c, "clientsecret"), 0o755)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(c, "type"), []byte("xsuaa"), 0o600)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(c, "clientid"), []byte("sb-weird!t1"), 0o600)).To(Succeed())
			Expect(os.Symlink(filepath.Join(c, "url"), filepath.Join(c, "url"))).To(Succeed())
			Expect(syscall.Mkfifo(filepath.Join(c, "certificate"), 0o600)).To(Succeed())
			expectBad(nil, []string{"--bindings-dir", root}, `binding "broken"`, `binding "weird"`)
			s := runBounded(w.secrets, 30*time.Second, nil, "bindings", "--bindings-dir", root, "--json")
			var views []map[string]any
			Expect(json.Unmarshal(s.Out.Contents(), &views)).To(Succeed())
			Expect(views).To(ContainElement(And(HaveKeyWithValue("name", "good"), HaveKeyWithValue("auth", "secret"), HaveKeyWithValue("problems", BeEmpty()))),
				"the good binding next to hostile ones is still usable")
		})

		It("a 50 MiB credential file is a problem naming the binding and the field", func() {
			b := filepath.Join(root, "big")
			w.file("bindings/big/type", []byte("xsuaa"))
			w.file("bindings/big/clientid", []byte("sb-big!t1"))
			w.file("bindings/big/url", []byte("https://provider.authentication.localhost"))
			w.file("bindings/big/clientsecret", bytes.Repeat([]byte("S"), 50<<20))
			expectBad(nil, []string{"--bindings-dir", root}, "vcap: dir "+b+`: binding "big": field "clientsecret": unreadable: larger than`)
		})

		It("a deeply nested JSON blob and .metadata are refused, not recursed into", func() {
			w.file("bindings/blob/credentials", []byte(`{"credentials":`+strings.Repeat(`{"a":`, 100_000)))
			w.file("bindings/meta/.metadata", []byte(strings.Repeat("[", 100_000)))
			w.file("bindings/meta/clientid", []byte("x"))
			expectBad(nil, []string{"--bindings-dir", root}, `binding "blob"`, `binding "meta"`)
		})

		It("an unreadable credential file (not root) or one that is a directory (root)", func() {
			if os.Geteuid() != 0 {
				f := w.file("bindings/locked/clientsecret", []byte(w.secret))
				w.file("bindings/locked/type", []byte("xsuaa"))
				Expect(os.Chmod(f, 0)).To(Succeed())
				expectBad(nil, []string{"--bindings-dir", root}, `binding "locked": field "clientsecret": unreadable`)
				return
			}
			// Root reads any file whatever its mode: a directory where the
			// file belongs is the unreadable case here.
			Expect(os.MkdirAll(filepath.Join(root, "locked", "clientsecret"), 0o755)).To(Succeed())
			w.file("bindings/locked/type", []byte("xsuaa"))
			w.file("bindings/locked/clientid", []byte("sb-locked!t1"))
			w.file("bindings/locked/url", []byte("https://provider.authentication.localhost"))
			expectBad(nil, []string{"--bindings-dir", root}, `binding "locked": field "clientsecret"`)
		})
	})

	Describe("broken PEM and keys", func() {
		var ca *testpki.CA
		var leaf *testpki.Leaf
		BeforeEach(func() {
			ca = testpki.NewCA()
			leaf = ca.Issue(testpki.ClientAuth())
			w.secrets.Add("binding key", string(leaf.KeyPEM(testpki.PKCS8)))
		})
		x509Binding := func(cert, key string) string {
			return w.file("x509.json", []byte(`{"xsuaa":[{"name":"x5","label":"xsuaa","plan":"application","credentials":`+
				w.creds(`,"credential-type":"x509","certurl":"https://provider.authentication.cert.localhost","certificate":`+jsonStr(cert)+`,"key":`+jsonStr(key))+`}]}`))
		}
		certPEM := func() string { return string(leaf.CertPEM()) }
		keyPEM := func() string { return string(leaf.KeyPEM(testpki.PKCS8)) }

		DescribeTable("bindings and token exit 2 naming the binding and the field",
			func(cert, key func() string, field string) {
				f := x509Binding(cert(), key())
				want := `binding "x5": field "` + field + `"`
				expectBad(nil, []string{"--vcap-file", f}, want)
				s := runBounded(w.secrets, 30*time.Second, nil, "token", "--vcap-file", f, "--binding", "x5", "--timeout", "5s")
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
			},
			Entry("a truncated certificate", func() string { c := certPEM(); return c[:len(c)/2] }, keyPEM, "certificate"),
			Entry("a certificate whose base64 is garbage", func() string {
				return "-----BEGIN CERTIFICATE-----\n!!!!not base64!!!!\n-----END CERTIFICATE-----\n"
			}, keyPEM, "certificate"),
			Entry("a certificate block holding a key", keyPEM, keyPEM, "certificate"),
			Entry("a doubly escaped PEM", func() string { return strings.ReplaceAll(certPEM(), "\n", `\\n`) }, keyPEM, "certificate"),
			Entry("a truncated key", certPEM, func() string { k := keyPEM(); return k[:len(k)-40] }, "key"),
			Entry("a key block holding a certificate", certPEM, certPEM, "key"),
			Entry("the key of another certificate", certPEM, func() string {
				other := ca.Issue(testpki.ClientAuth())
				w.secrets.Add("other key", string(other.KeyPEM(testpki.PKCS8)))
				return string(other.KeyPEM(testpki.PKCS8))
			}, "key"),
			Entry("an expired certificate", func() string {
				return string(ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))).CertPEM())
			}, keyPEM, "certificate"),
		)

		It("a --key-file that does not match the binding's certificate", func() {
			other := ca.Issue(testpki.ClientAuth())
			w.secrets.Add("other key", string(other.KeyPEM(testpki.SEC1)))
			keyFile := w.file("other.key", other.KeyPEM(testpki.SEC1))
			f := x509Binding(certPEM(), "")
			expectBad(nil, []string{"--vcap-file", f, "--key-file", keyFile}, `binding "x5": field "key"`, "--key-file "+keyFile+" belongs to another certificate")
		})
	})

	Describe("credbroker token", func() {
		var good string
		BeforeEach(func() {
			good = w.file("good.json", []byte(`{"xsuaa":[{"name":"x","label":"xsuaa","plan":"application","credentials":`+
				w.creds(`,"url":"https://provider.authentication.localhost:1"`)+`}]}`))
		})
		DescribeTable("bad flags and files exit 2 naming the flag",
			func(args func() []string, want string) {
				s := runBounded(w.secrets, 30*time.Second, nil, append([]string{"token", "--vcap-file", good, "--timeout", "5s"}, args()...)...)
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
			},
			Entry("a FIFO as --ca-file", func() []string { return []string{"--ca-file", w.fifo("ca.fifo")} }, "--ca-file"),
			Entry("a directory as --ca-file", func() []string { return []string{"--ca-file", w.dir} }, "--ca-file"),
			Entry("a --ca-file without PEM", func() []string { return []string{"--ca-file", w.file("ca.crt", []byte(w.secret))} }, "no PEM certificate"),
			Entry("a FIFO as --assertion-file", func() []string {
				return []string{"--grant", "jwt-bearer", "--assertion-file", w.fifo("a.fifo")}
			}, "--assertion-file"),
			Entry("an empty --assertion-file", func() []string {
				return []string{"--grant", "jwt-bearer", "--assertion-file", w.file("empty", nil)}
			}, "empty"),
			Entry("a tenant with a path", func() []string { return []string{"--tenant", "../../admin"} }, "not a subdomain"),
			Entry("a tenant with a dot", func() []string { return []string{"--tenant", "a.evil.example"} }, "not a subdomain"),
			Entry("a tenant with CRLF", func() []string { return []string{"--tenant", "a\r\nX-Injected: 1"} }, "not a subdomain"),
			Entry("--tenant and --zid", func() []string { return []string{"--tenant", "a", "--zid", "b"} }, "--tenant and --zid"),
			Entry("an unknown grant", func() []string { return []string{"--grant", "implicit"} }, `--grant "implicit"`),
			Entry("a bad --resolve rule", func() []string { return []string{"--resolve", "*.x=not-an-ip"} }, "--resolve"),
			Entry("an unknown binding", func() []string { return []string{"--binding", "nope"} }, `name "nope"`),
			Entry("a negative --timeout", func() []string { return []string{"--timeout", "-1s"} }, "--timeout"),
		)

		It("an unreachable token service is exit 1 within --timeout, naming the binding", func() {
			s := runBounded(w.secrets, 30*time.Second, nil, "token", "--vcap-file", good, "--timeout", "2s")
			Expect(s).To(gexec.Exit(1))
			Expect(string(s.Err.Contents())).To(ContainSubstring(`binding "x"`))
		})
	})

	Describe("credbroker token against a token service that answers garbage", func() {
		var srv *mockauth.Server
		var vcapFile, caFile string
		BeforeEach(func() {
			var err error
			srv, err = mockauth.Start(mockauth.Options{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(srv.Close)
			vcapFile = w.file("vcap.json", srv.VCAPServices())
			caFile = w.file("ca.crt", srv.CACertPEM())
			w.secrets.Add("mock client secret", srv.ClientSecret(srv.Info().SecretClientID))
		})
		DescribeTable("exit 1 with a clear error, bounded retries",
			func(f mockauth.Fault, want string) {
				f.Target = mockauth.TargetToken
				Expect(srv.AddFault(f)).To(Succeed())
				s := runBounded(w.secrets, 60*time.Second, nil, "token", "--vcap-file", vcapFile, "--binding", mockauth.SecretBindingName, "--ca-file", caFile, "--timeout", "3s")
				Expect(s).To(gexec.Exit(1), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				Expect(srv.Stats().TokenRequests).To(BeNumerically("<=", 10), "no retry storm")
			},
			Entry("invalid JSON", mockauth.Fault{Body: `{"access_token": `}, "tokenclient"),
			Entry("an HTML error page with 200", mockauth.Fault{Body: `<html>` + strings.Repeat("x", 1<<20) + `</html>`}, "tokenclient"),
			Entry("200 without an access token", mockauth.Fault{Body: `{"token_type":"bearer","expires_in":60}`}, "tokenclient"),
			Entry("a connection dropped mid-response", mockauth.Fault{Drop: true}, "tokenclient"),
			Entry("503 for ever", mockauth.Fault{Status: 503}, "503"),
			Entry("a 429 asking to come back in an hour", mockauth.Fault{Status: 429, RetryAfter: time.Hour}, "429"),
		)
	})

	Describe("credbroker pair", func() {
		var srv *mockauth.Server
		var caFile, tokURL, token string
		BeforeEach(func() {
			var err error
			// ECDSA keys (quick): the connector CA must then be ECDSA too.
			srv, err = mockauth.Start(mockauth.Options{ECDSAConnectorCA: true})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(srv.Close)
			caFile = w.file("ca.crt", srv.CACertPEM())
			tokURL, token, err = srv.NewPairingToken("app1")
			Expect(err).NotTo(HaveOccurred())
			w.secrets.Add("one-time token", token)
		})
		pair := func(args ...string) *gexec.Session {
			GinkgoHelper()
			return runBounded(w.secrets, 60*time.Second, nil, append([]string{"pair", "--ca-file", caFile, "--key-type", "ecdsa-p256", "--timeout", "10s"}, args...)...)
		}
		withToken := func(u string) string { return strings.ReplaceAll(u, "TOKEN", token) }

		DescribeTable("malformed token URLs: exit 2, the token neither spent nor printed",
			func(raw string) {
				s := pair("--token-url", withToken(raw), "--cert-dir", filepath.Join(w.dir, "c"))
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring("--token-url"))
				Expect(srv.Stats().PairingInfoRequests).To(BeZero())
			},
			Entry("no scheme", "connector.localhost/v1/applications/signingRequests/info?token=TOKEN"),
			Entry("plain http beyond loopback", "http://connector.example.com/v1/applications/signingRequests/info?token=TOKEN"),
			Entry("javascript:", "javascript:alert(1)//?token=TOKEN"),
			Entry("file://", "file:///etc/passwd?token=TOKEN"),
			Entry("no host", "https:///v1/applications/signingRequests/info?token=TOKEN"),
			Entry("a bracketed host that never closes", "https://[::1/info?token=TOKEN"),
			Entry("CRLF in the URL", "https://connector.localhost/info?token=TOKEN\r\nHost: evil"),
			Entry("percent garbage", "https://connector.localhost/%zz?token=TOKEN"),
		)

		It("a token URL of 100 KiB (argv holds no more) is not amplified in the error", func() {
			long := "https://" + strings.Repeat("a", 100<<10) + ".connector.localhost:1/info?token=" + token
			s := harness.Start(bin, nil, "pair", "--ca-file", caFile, "--timeout", "10s", "--token-url", long, "--cert-dir", filepath.Join(w.dir, "c"))
			Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit())
			expectNoCrash(s.Out.Contents(), s.Err.Contents())
			w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			Expect(s.ExitCode()).To(BeElementOf(1, 2), "stderr: %.300s", s.Err.Contents())
			// The error names the URL (without its token): not amplified beyond one copy.
			Expect(len(s.Out.Contents()) + len(s.Err.Contents())).To(BeNumerically("<", len(long)+4096))
			Expect(srv.Stats().PairingInfoRequests).To(BeZero())
		})

		DescribeTable("a token URL file that is not a small regular file: exit 2 naming it",
			func(make func() string, want string) {
				s := pair("--token-url-file", make(), "--cert-dir", filepath.Join(w.dir, "c"))
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				Expect(srv.Stats().PairingInfoRequests).To(BeZero())
			},
			Entry("a directory", func() string { return w.dir }, "is a directory"),
			Entry("a FIFO", func() string { return w.fifo("url.fifo") }, "not a regular file"),
			Entry("empty", func() string { return w.file("empty", nil) }, "--token-url"),
			Entry("5 MiB", func() string { return w.file("big", bytes.Repeat([]byte("a"), 5<<20)) }, "larger than"),
			Entry("a URL of 3 MiB with a NUL", func() string {
				return w.file("long", []byte("https://connector.localhost/"+strings.Repeat("a", 3<<20)+"\x00?token="+token))
			}, "--token-url-file"),
			Entry("missing", func() string { return filepath.Join(w.dir, "absent") }, "no such file"),
		)

		DescribeTable("a certificate directory that cannot be written: exit 2 before the token is spent",
			func(make func() string, want string) {
				s := pair("--token-url", tokURL, "--cert-dir", make())
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				Expect(srv.Stats().PairingInfoRequests).To(BeZero(), "the token is still good")
			},
			Entry("a file", func() string { return w.file("afile", []byte("x")) }, "not a directory"),
			Entry("under a file", func() string { return filepath.Join(w.file("afile", []byte("x")), "sub") }, "not a directory"),
			Entry("immutable (chattr +i)", func() string {
				d := filepath.Join(w.dir, "immutable")
				Expect(os.MkdirAll(d, 0o755)).To(Succeed())
				if out, err := exec.Command("chattr", "+i", d).CombinedOutput(); err != nil {
					skipOrFail("chattr +i is not available here: " + string(out))
				}
				DeferCleanup(func() { _ = exec.Command("chattr", "-i", d).Run() })
				return d
			}, "not writable"),
		)

		It("a full certificate directory: exit 1, says the token is used up, leaves nothing half-written", func() {
			d := filepath.Join(w.dir, "full")
			Expect(os.MkdirAll(d, 0o755)).To(Succeed())
			if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size=16k"); err != nil {
				skipOrFail("cannot mount a tmpfs here (" + err.Error() + "): a full disk is not simulated")
			}
			DeferCleanup(func() { _ = syscall.Unmount(d, syscall.MNT_DETACH) })
			filler, err := os.Create(filepath.Join(d, "filler"))
			Expect(err).NotTo(HaveOccurred())
			for {
				if _, err := filler.Write(make([]byte, 1024)); err != nil {
					break
				}
			}
			_ = filler.Close()
			s := pair("--token-url", tokURL, "--cert-dir", d)
			Expect(s).To(gexec.Exit(1), "stderr: %s", s.Err.Contents())
			Expect(string(s.Err.Contents())).To(ContainSubstring("no space left on device"))
			Expect(string(s.Err.Contents())).To(ContainSubstring("a new one is needed"))
			entries, err := os.ReadDir(d)
			Expect(err).NotTo(HaveOccurred())
			names := []string{}
			for _, e := range entries {
				names = append(names, e.Name())
			}
			Expect(names).To(ConsistOf("filler"), "no half-written generation is left behind")
		})

		DescribeTable("a connector that misbehaves: exit 1, bounded, nothing written",
			func(f mockauth.Fault, want string) {
				f.Target = mockauth.TargetConnector
				Expect(srv.AddFault(f)).To(Succeed())
				d := filepath.Join(w.dir, "c")
				s := pair("--token-url", tokURL, "--cert-dir", d, "--timeout", "2s") // the last --timeout wins
				Expect(s).To(gexec.Exit(1), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				Expect(filepath.Join(d, "tls.key")).NotTo(BeAnExistingFile())
			},
			Entry("invalid JSON", mockauth.Fault{Body: `{"csrUrl": `}, "connector"),
			Entry("a gigantic body", mockauth.Fault{Body: `{"csrUrl":"` + strings.Repeat("a", 8<<20) + `"}`}, "connector"),
			Entry("a dropped connection", mockauth.Fault{Drop: true}, "connector"),
			Entry("slower than --timeout", mockauth.Fault{Latency: 30 * time.Second}, "connector"),
		)
	})

	Describe("credbroker run with a hostile configuration", func() {
		var vcapFile string
		BeforeEach(func() {
			vcapFile = w.file("vcap.json", []byte(`{"xsuaa":[{"name":"x","label":"xsuaa","plan":"application","credentials":`+w.creds("")+`}]}`))
		})
		laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
		for i, c := range "bcdefghi" {
			prev := string("abcdefghi"[i])
			laughs += fmt.Sprintf("%c: &%c [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		}
		DescribeTable("exit 2 with the config file, line and field, without listening",
			func(config func() string, want string, args ...string) {
				cfg := config()
				s := runBounded(w.secrets, 60*time.Second, nil, append([]string{"run", "--config", cfg, "--vcap-file", vcapFile, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
				Expect(string(s.Err.Contents())).NotTo(ContainSubstring("listening"))
			},
			Entry("a billion laughs", func() string { return w.file("laughs.yaml", []byte(laughs+"routes: *i\n")) }, "laughs.yaml"),
			Entry("100,000 levels of nesting", func() string { return w.file("deep.yaml", []byte("routes: "+strings.Repeat("[", 100_000))) }, "malformed YAML"),
			Entry("a 5 MiB config", func() string {
				return w.file("big.yaml", append([]byte("routes: []\n#"), bytes.Repeat([]byte("x"), 5<<20)...))
			}, "larger than"),
			Entry("a FIFO", func() string { return w.fifo("config.fifo") }, "not a regular file"),
			Entry("a directory", func() string { return w.dir }, "is a directory"),
			Entry("a tab for indentation", func() string { return w.file("tab.yaml", []byte("routes:\n\t- x\n")) }, "malformed YAML"),
			Entry("routes as a map", func() string { return w.file("types.yaml", []byte("routes: {name: 5}\n")) }, "line 1"),
			Entry("a non-loopback listener without the flag", func() string {
				return w.file("listen.yaml", []byte("listen: 0.0.0.0:0\nroutes: []\n"))
			}, "not loopback", "--listen", "0.0.0.0:0"),
			Entry("a non-loopback admin listener without the flag", func() string {
				return w.file("admin.yaml", []byte("routes: []\n"))
			}, "not loopback", "--admin-listen", "[::]:0"),
			Entry("an upstream with user information", func() string {
				return w.file("userinfo.yaml", []byte(`routes: [{name: o, upstream: "https://u:`+w.secret+`@x.example", auth: {type: none}}]`+"\n"))
			}, `routes[0].upstream ("o")`),
			Entry("a route name with a slash", func() string {
				return w.file("slash.yaml", []byte(`routes: [{name: "a/../b", upstream: "https://x.example", auth: {type: none}}]`+"\n"))
			}, `routes[0].name`),
			Entry("duplicate route names", func() string {
				return w.file("dup.yaml", []byte("routes:\n  - {name: a, upstream: \"https://x.example\", auth: {type: none}}\n  - {name: a, upstream: \"https://y.example\", auth: {type: none}}\n"))
			}, "duplicate name"),
			Entry("an unknown auth type", func() string {
				return w.file("auth.yaml", []byte(`routes: [{name: a, upstream: "https://x.example", auth: {type: kerberos}}]`+"\n"))
			}, `routes[0].auth.type`),
			Entry("an OAuth 1.0a secret file that is a FIFO", func() string {
				key := w.file("k", []byte("key"))
				return w.file("o1.yaml", []byte(`routes: [{name: a, upstream: "https://x.example", auth: {type: oauth1, key_file: `+key+`, secret_file: `+w.fifo("s.fifo")+`}}]`+"\n"))
			}, `routes[0].auth.secret_file`),
		)
	})

	Describe("credbroker mock", func() {
		DescribeTable("bad flags: exit 2 naming the flag",
			func(want string, args ...string) {
				s := runBounded(nil, 30*time.Second, nil, append([]string{"mock"}, args...)...)
				Expect(s).To(gexec.Exit(2), "stderr: %s", s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring(want))
			},
			Entry("a negative cert TTL", "--cert-ttl", "--cert-ttl", "-1s"),
			Entry("a cert TTL under a second", "--cert-ttl", "--cert-ttl", "1ns"),
			Entry("a token TTL that is not a duration", "-token-ttl", "--token-ttl", "soon"),
			Entry("a negative pairing TTL", "--pairing-ttl", "--pairing-ttl", "-5m"),
			Entry("an empty application", "--application", "--application", ""),
			Entry("a dir under a file", "--dir", "--dir", "/dev/null/x"),
			Entry("an unknown flag", "-bogus", "--bogus"),
			Entry("an extra argument", "unexpected argument", "extra"),
		)
	})

	It("every command refuses an unknown flag and a stray argument with exit 2", func() {
		for _, cmd := range []string{"bindings", "token", "pair", "mock"} {
			s := runBounded(nil, 30*time.Second, nil, cmd, "--definitely-not-a-flag")
			Expect(s).To(gexec.Exit(2), cmd)
		}
		s := runBounded(nil, 30*time.Second, nil, "no-such-command")
		Expect(s).To(gexec.Exit(2))
	})
})
