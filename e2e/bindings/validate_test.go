package bindings_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
)

// problemLines are the problems credbroker printed on stderr, one per line
// ("  sidecar: config F line N: key: …", or the single-problem form).
func problemLines(stderr []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	for sc.Scan() {
		l := sc.Text()
		if i := strings.Index(l, "sidecar: "); i >= 0 && !strings.Contains(l, "warning") && !strings.HasPrefix(l, "{") && !strings.HasPrefix(l, "time=") {
			out = append(out, l[i:])
		}
	}
	return out
}

// runWarnings are the configuration warnings a JSON-logging run wrote.
func runWarnings(stderr []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	for sc.Scan() {
		var rec struct {
			Msg     string `json:"msg"`
			Warning string `json:"warning"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "configuration warning" {
			out = append(out, rec.Warning)
		}
	}
	return out
}

// validateWarnings are the warnings validate printed.
func validateWarnings(stderr []byte) []string {
	var out []string
	for _, l := range strings.Split(string(stderr), "\n") {
		if w, ok := strings.CutPrefix(l, "credbroker validate: warning: "); ok {
			out = append(out, w)
		}
	}
	return out
}

// Issue 18: `credbroker validate` reads what `run` reads and reports every
// problem at once; `run` refuses the same input with the same messages.
var _ = Describe("credbroker validate", func() {
	var w *world
	var certDir, caFile string
	loopback := []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}
	BeforeEach(func() {
		w = newWorld()
		leaf := w.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("connector"))
		certDir = filepath.Join(w.dir, "connector")
		writeFiles(certDir, map[string]string{"tls.crt": string(leaf.CertPEM()), "tls.key": string(leaf.KeyPEM(testpki.PKCS8))})
		w.secrets.Add("connector key", string(leaf.KeyPEM(testpki.PKCS8)))
		caFile = filepath.Join(w.dir, "ca.crt")
		Expect(os.WriteFile(caFile, w.ca.CertPEM(), 0o600)).To(Succeed())
	})
	write := func(name, data string) string {
		p := filepath.Join(w.dir, name)
		Expect(os.WriteFile(p, []byte(data), 0o600)).To(Succeed())
		return p
	}

	It("exits 0 on a clean config and says what it checked", func() {
		secret := write("aps.secret", w.secrets.Plant("oauth1 consumer secret"))
		key := write("aps.key", "consumer-key")
		cfg := write("clean.yaml", fmt.Sprintf(`ca_file: %s
certificates:
  - {name: connector, dir: %s}
  - {name: x509, binding: x509-xsuaa}
routes:
  - {name: orders, upstream: https://orders.example.com, auth: {type: bearer, binding: app-xsuaa, grant: client-credentials}}
  - {name: events, upstream: https://gateway.example.com, auth: {type: mtls, certificate: connector}}
  - {name: aps, upstream: https://aps.example.com, auth: {type: oauth1, key_file: %s, secret_file: %s}}
`, caFile, certDir, key, secret))
		s := run(nil, append([]string{"validate", "--config", cfg, "--vcap-file", w.vcapF}, loopback...)...)
		Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
		Expect(string(s.Out.Contents())).To(Equal(fmt.Sprintf("config %s: ok (bindings from file %s)\n", cfg, w.vcapF)))
		Expect(string(s.Err.Contents())).To(BeEmpty(), "no warnings on a clean config")
		w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
	})

	It("reports every mistake in one run with file, line and key and exits 2; run refuses the same input with the same lines", func() {
		badCA := write("bad-ca.crt", "-----BEGIN CERTIFICATE-----\n"+w.secrets.Plant("text in a bad CA bundle")+"\n-----END CERTIFICATE-----\n")
		empty := filepath.Join(w.dir, "not-paired")
		Expect(os.MkdirAll(empty, 0o700)).To(Succeed())
		cfg := write("bad.yaml", fmt.Sprintf(`ca_file: %s
drain_timout: 5s
client_idle_timeout: 20
certificates:
  - {name: connector, dir: %s}
routes:
  - {name: orders, upstream: https://orders.example.com, auth: {type: bearer, binding: app-xsuaaa}}
  - {name: events, upstream: https://gateway.example.com, auth: {type: mtls, certificate: connector}}
`, badCA, empty))
		args := append([]string{"--config", cfg, "--vcap-file", w.vcapF}, loopback...)
		r := harness.Start(bin, nil, append([]string{"run"}, args...)...)
		DeferCleanup(func() { r.Kill() })
		Eventually(r).WithTimeout(30*time.Second).Should(gexec.Exit(2), "run refuses to start")
		src := "sidecar: config " + cfg
		lines := problemLines(r.Err.Contents())
		Expect(lines).To(HaveExactElements(
			HavePrefix(src+" line 1: ca_file: invalid value: "+badCA+": "),
			Equal(src+` line 2: drain_timout: unknown key: did you mean "drain_timeout"?`),
			Equal(src+" line 3: client_idle_timeout: invalid value: want a duration with a unit: 20s, not 20"),
			And(HavePrefix(src+` line 5: certificates[0].dir ("connector"): invalid value: no usable certificate: `),
				ContainSubstring(filepath.Join(empty, "tls.crt")), ContainSubstring("credbroker pair --cert-dir "+empty)),
			Equal(src+` line 7: routes[0].auth.binding ("orders"): unknown binding: "app-xsuaaa"; did you mean "app-xsuaa"? (bindings: app-xsuaa, db, ias, x509-xsuaa)`),
		), "run reports every problem at once: %s", r.Err.Contents())
		Expect(string(r.Err.Contents())).To(ContainSubstring("credbroker run: 5 problems in the configuration:\n"))

		v := run(nil, append([]string{"validate"}, args...)...)
		Expect(v).To(gexec.Exit(2), string(v.Err.Contents()))
		Expect(string(v.Err.Contents())).To(HavePrefix("credbroker validate: 5 problems in the configuration:\n"))
		Expect(problemLines(v.Err.Contents())).To(Equal(lines), "validate and run report the same problems in the same words")
		Expect(v.Out.Contents()).To(BeEmpty())
		w.secrets.ExpectNotIn(v.Out.Contents(), v.Err.Contents(), r.Out.Contents(), r.Err.Contents())
	})

	It("names the exact key of a value of the wrong type, also inside a route, and never echoes the value", func() {
		pasted := w.secrets.Plant("value pasted into the wrong key")
		cfg := write("types.yaml", fmt.Sprintf(`max_token_keys: %s
routes:
  - name: orders
    upstream: https://orders.example.com
    auth: {type: none, scopes: {read: yes}}
`, pasted))
		v := run(nil, append([]string{"validate", "--config", cfg, "--vcap-file", w.vcapF}, loopback...)...)
		Expect(v).To(gexec.Exit(2), string(v.Err.Contents()))
		src := "sidecar: config " + cfg
		Expect(problemLines(v.Err.Contents())).To(HaveExactElements(
			Equal(src+" line 1: max_token_keys: invalid value: cannot unmarshal !!str value into int"),
			Equal(src+" line 5: routes[0].auth.scopes: invalid value: cannot unmarshal !!map into []string"),
		), "%s", v.Err.Contents())
		w.secrets.ExpectNotIn(v.Out.Contents(), v.Err.Contents())
	})

	It("refuses a binding the config uses that is unusable, in validate and run alike (exit 2), naming the key and the binding's field", func() {
		var doc map[string][]map[string]any
		Expect(json.Unmarshal(w.vcap, &doc)).To(Succeed())
		doc["xsuaa"] = append(doc["xsuaa"], map[string]any{"name": "half-x509", "label": "xsuaa", "plan": "application",
			"credentials": map[string]any{"clientid": "sb-half", "credential-type": "x509", "url": "https://p.authentication.localhost:8443",
				"clientsecret": w.secrets.Plant("secret of a broken binding"), "certificate": string(w.x509.CertPEM())}})
		raw, err := json.Marshal(doc)
		Expect(err).NotTo(HaveOccurred())
		vcapF := write("half.json", string(raw))
		cfg := write("half.yaml", "routes:\n  - {name: orders, upstream: https://orders.example.com, auth: {type: bearer, binding: half-x509}}\n")
		args := append([]string{"--config", cfg, "--vcap-file", vcapF}, loopback...)

		want := fmt.Sprintf(`sidecar: config %s line 2: routes[0].auth.binding ("orders"): unusable binding: binding "half-x509": field "key": no private key: credential-type x509 but no "key" and no --key-file`, cfg)
		r := harness.Start(bin, nil, append([]string{"run"}, args...)...)
		DeferCleanup(func() { r.Kill() })
		Eventually(r).WithTimeout(30*time.Second).Should(gexec.Exit(2), "run exits 2 rather than serving a route that cannot work")
		Expect(problemLines(r.Err.Contents())).To(Equal([]string{want}))

		v := run(nil, append([]string{"validate"}, args...)...)
		Expect(v).To(gexec.Exit(2), string(v.Err.Contents()))
		Expect(problemLines(v.Err.Contents())).To(Equal([]string{want}))
		w.secrets.ExpectNotIn(v.Out.Contents(), v.Err.Contents(), r.Out.Contents(), r.Err.Contents())
	})

	It("warns, in validate and at run's start alike, about no routes, a paired certificate without renew and a binding root that is one binding's directory", func() {
		Expect(os.WriteFile(filepath.Join(certDir, "connection.json"), []byte("{}"), 0o600)).To(Succeed())
		cfg := write("warn.yaml", fmt.Sprintf("certificates:\n  - {name: connector, dir: %s}\n", certDir))
		one := filepath.Join(w.root, "app-xsuaa") // a binding, not the root of bindings
		args := append([]string{"--config", cfg, "--bindings-dir", one}, loopback...)

		r := harness.Start(bin, nil, append([]string{"run", "--log-format", "json"}, args...)...)
		DeferCleanup(func() { r.Kill() })
		Eventually(r.Err).WithTimeout(30 * time.Second).Should(gbytes.Say(`credbroker sidecar listening`))
		warnings := runWarnings(r.Err.Contents())
		Expect(warnings).To(ConsistOf(
			HavePrefix(fmt.Sprintf(`sidecar: config %s line 2: certificates[0] ("connector"): it was paired with a connector but renew is false: it will not be renewed and stops working when it expires at `, cfg)),
			Equal(fmt.Sprintf("sidecar: config %s: routes: no routes, no token_api and no inbound: credbroker serves nothing but health and metrics (every proxy request gets 403); add routes (docs/configuration.md)", cfg)),
			And(HavePrefix("sidecar: bindings dir "+one+": it holds binding files itself ("), ContainSubstring("type"), ContainSubstring("clientid"),
				ContainSubstring("point --bindings-dir / SERVICE_BINDING_ROOT at the directory above it")),
		), "run warns at start: %s", r.Err.Contents())
		r.Terminate()
		Eventually(r).WithTimeout(30 * time.Second).Should(gexec.Exit(0))

		v := run(nil, append([]string{"validate"}, args...)...)
		Expect(v).To(gexec.Exit(0), "warnings alone do not fail: %s", v.Err.Contents())
		Expect(validateWarnings(v.Err.Contents())).To(ConsistOf(warnings), "validate prints the warnings run logs")
		Expect(string(v.Out.Contents())).To(Equal(fmt.Sprintf("config %s: ok (bindings from dir %s), 3 warnings above\n", cfg, one)))
		w.secrets.ExpectNotIn(v.Out.Contents(), v.Err.Contents(), r.Out.Contents(), r.Err.Contents())
	})

	It("never panics on garbage and names the file", func() {
		for i, garbage := range []string{
			"\x00\x01\x02\xff",
			"routes: [{name: a, auth: {type: [}]",
			"routes:\n  - &a {<<: *a}\n",
			"? [a, {b: c}]\n: [d]\n",
			strings.Repeat("- ", 5000) + "x\n",
			"routes: 5\ncertificates: {a: b}\ninbound: []\ntoken_api: x\n",
			"routes:\n  - name: a\n    auth:\n      type: bearer\n      binding: [x]\n      scopes: {a: b}\n",
		} {
			cfg := write(fmt.Sprintf("garbage-%d.yaml", i), garbage)
			s := run(nil, "validate", "--config", cfg, "--vcap-file", w.vcapF)
			Expect(s).To(gexec.Exit(2), "%q: %s", garbage, s.Err.Contents())
			Expect(string(s.Err.Contents())).To(ContainSubstring("config "+cfg), "%q", garbage)
			Expect(string(s.Err.Contents())).NotTo(ContainSubstring("panic"))
			Expect(string(s.Err.Contents())).NotTo(ContainSubstring("goroutine "))
		}
	})
})
