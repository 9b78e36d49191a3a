package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

const (
	checkSecret     = "planted-check-secret-5c1e"
	checkOAuthKey   = "planted-oauth1-secret-77ab"
	checkPairingTok = "planted-pairing-token-e90d"
)

// checkWorld is a directory with bindings (one usable, one without a
// secret, one unused and broken), a certificate directory with a valid
// pair, and files for the config to name.
type checkWorld struct {
	dir, vcapFile, certDir, caFile string
}

func newCheckWorld(t *testing.T) *checkWorld {
	t.Helper()
	w := &checkWorld{dir: t.TempDir()}
	write := func(name, data string) string {
		p := filepath.Join(w.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	w.vcapFile = write("vcap.json", `{"xsuaa":[
 {"name":"my-xsuaa","label":"xsuaa","plan":"application","credentials":{"clientid":"sb-x","clientsecret":"`+checkSecret+`","url":"https://p.authentication.localhost:1","uaadomain":"authentication.localhost"}},
 {"name":"hidden","label":"xsuaa","plan":"application","credentials":{"clientid":"sb-h","credential-type":"binding-secret","url":"https://p.authentication.localhost:1","uaadomain":"authentication.localhost"}},
 {"name":"spare","label":"xsuaa","plan":"application","credentials":{"clientid":"sb-s","url":"https://p.authentication.localhost:1","uaadomain":"authentication.localhost"}}]}`)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("connector"))
	w.certDir = filepath.Join(w.dir, "cert")
	write("cert/tls.crt", string(leaf.CertPEM()))
	write("cert/tls.key", string(leaf.KeyPEM(testpki.PKCS8)))
	w.caFile = write("ca.crt", string(ca.CertPEM()))
	write("oauth.key", "consumer")
	write("oauth.secret", checkOAuthKey)
	write("pairing-url", "https://connector.localhost/v1/applications/signingRequests/info?token="+checkPairingTok+"\n")
	write("notpem.crt", "this is not PEM\n")
	return w
}

func (w *checkWorld) broker(t *testing.T, config string, mod func(*Options)) *Broker {
	t.Helper()
	cfg := filepath.Join(w.dir, "credbroker.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{ConfigFile: cfg, Bindings: vcap.Sources{VCAPFile: w.vcapFile}}
	if mod != nil {
		mod(&o)
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func problemLines(list sidecar.ConfigErrors) []string {
	out := []string{}
	for _, e := range list {
		out = append(out, e.Error())
	}
	return out
}

// TestCheckFindsEveryProblemAndLoadAgrees: one pass finds every kind of
// mistake, each with file, line and key; Load refuses the same input with
// exactly the same problems; no secret is in any of them.
func TestCheckFindsEveryProblemAndLoadAgrees(t *testing.T) {
	g := NewWithT(t)
	w := newCheckWorld(t)
	config := fmt.Sprintf(`ca_file: %[1]s/notpem.crt
drain_timeout: 20
routz: []
certificates:
  - {name: connector, dir: %[1]s/nocert}
  - {name: paired, dir: %[1]s/nocert2, pairing_url_file: %[1]s/no-pairing-url}
routes:
  - {name: orders, upstream: https://orders.example, auth: {type: bearer, binding: my-xsuaaa}}
  - {name: hidden, upstream: https://hidden.example, auth: {type: bearer, binding: hidden}}
  - {name: aps, upstream: https://aps.example, auth: {type: oauth1, key_file: %[1]s/oauth.key, secret_file: %[1]s/missing.secret}}
`, w.dir)
	b := w.broker(t, config, nil)
	p, err := b.Check(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	src := "sidecar: config " + filepath.Join(w.dir, "credbroker.yaml")
	g.Expect(problemLines(p.Errors)).To(HaveExactElements(
		HavePrefix(src+" line 1: ca_file: invalid value: "+w.dir+"/notpem.crt: "),
		Equal(src+" line 2: drain_timeout: invalid value: want a duration with a unit: 20s, not 20"),
		Equal(src+` line 3: routz: unknown key: did you mean "routes"?`),
		And(HavePrefix(src+` line 5: certificates[0].dir ("connector"): invalid value: no usable certificate: `), ContainSubstring(w.dir+"/nocert/tls.crt"), ContainSubstring("credbroker pair --cert-dir")),
		And(HavePrefix(src+` line 6: certificates[1].pairing_url_file ("paired"): invalid value: `), ContainSubstring(w.dir+"/no-pairing-url")),
		Equal(src+` line 8: routes[0].auth.binding ("orders"): unknown binding: "my-xsuaaa"; did you mean "my-xsuaa"? (bindings: hidden, my-xsuaa, spare)`),
		And(HavePrefix(src+` line 9: routes[1].auth.binding ("hidden"): unusable binding: binding "hidden": field "clientsecret"`)),
		And(HavePrefix(src+` line 10: routes[2].auth.secret_file ("aps"): invalid value: `), ContainSubstring("missing.secret")),
	))
	g.Expect(errors.Is(p.Err(), sidecar.ErrUnusableBinding)).To(BeTrue())
	g.Expect(problemLines(p.Warnings)).To(ConsistOf(
		Equal(src+` line 6: certificates[1] ("paired"): it is paired with a connector (pairing_url_file) but renew is false: it will not be renewed and stops working when it expires; set renew: true`),
		And(HavePrefix(`sidecar: bindings: vcap: file `+w.vcapFile+`: binding "spare"`), HaveSuffix("(the config does not use this binding)")),
	))

	_, _, lerr := b.Load(context.Background())
	g.Expect(lerr).To(MatchError(p.Err().Error()), "run refuses the same input with the same messages")
	var ce *sidecar.ConfigError
	g.Expect(errors.As(lerr, &ce)).To(BeTrue(), "bad configuration: exit 2")

	all := p.Err().Error() + strings.Join(problemLines(p.Warnings), "\n")
	for _, s := range []string{checkSecret, checkOAuthKey, checkPairingTok} {
		g.Expect(all).NotTo(ContainSubstring(s))
	}
}

func TestCheckCleanConfig(t *testing.T) {
	g := NewWithT(t)
	w := newCheckWorld(t)
	b := w.broker(t, fmt.Sprintf(`ca_file: %[1]s/ca.crt
certificates:
  - {name: connector, dir: %[1]s/cert}
  - {name: later, dir: %[1]s/empty, pairing_url_file: %[1]s/pairing-url, renew: true}
routes:
  - {name: orders, upstream: https://orders.example, auth: {type: bearer, binding: my-xsuaa}}
  - {name: events, upstream: https://events.example, auth: {type: mtls, certificate: connector}}
  - {name: aps, upstream: https://aps.example, auth: {type: oauth1, key_file: %[1]s/oauth.key, secret_file: %[1]s/oauth.secret}}
`, w.dir), nil)
	p, err := b.Check(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Err()).NotTo(HaveOccurred())
	g.Expect(problemLines(p.Warnings)).To(HaveLen(2), "the unused bindings without a secret")
}

func TestCheckWarnings(t *testing.T) {
	g := NewWithT(t)
	w := newCheckWorld(t)
	only := func(p *Problems, want string) {
		t.Helper()
		g.Expect(p.Err()).NotTo(HaveOccurred())
		g.Expect(problemLines(p.Warnings)).To(ContainElement(ContainSubstring(want)))
	}
	check := func(config string, mod func(*Options)) *Problems {
		t.Helper()
		p, err := w.broker(t, config, mod).Check(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		return p
	}

	By := func(string) {}
	By("no routes")
	only(check("listen: 127.0.0.1:0\n", nil), "credbroker.yaml: routes: no routes, no token_api and no inbound")
	g.Expect(problemLines(check("token_api: {bindings: [my-xsuaa]}\n", nil).Warnings)).NotTo(ContainElement(ContainSubstring("no routes")))

	By("a paired certificate without renew")
	g.Expect(os.WriteFile(filepath.Join(w.certDir, "connection.json"), []byte("{}"), 0o600)).To(Succeed())
	only(check(fmt.Sprintf("certificates:\n  - {name: connector, dir: %s}\nroutes: [{name: e, upstream: https://e.example, auth: {type: mtls, certificate: connector}}]\n", w.certDir), nil),
		`line 2: certificates[0] ("connector"): it was paired with a connector but renew is false: it will not be renewed and stops working when it expires at `)
	only(check(fmt.Sprintf("certificates:\n  - {name: later, dir: %[1]s/empty, pairing_url_file: %[1]s/pairing-url}\nroutes: [{name: e, upstream: https://e.example, auth: {type: mtls, certificate: later}}]\n", w.dir), nil),
		`certificates[0] ("later"): it is paired with a connector (pairing_url_file) but renew is false`)

	By("a binding root that is one binding's directory")
	one := filepath.Join(w.dir, "one-binding")
	g.Expect(os.MkdirAll(one, 0o700)).To(Succeed())
	for f, v := range map[string]string{"type": "xsuaa", "clientid": "sb-x", "clientsecret": checkSecret, "url": "https://p.authentication.localhost:1"} {
		g.Expect(os.WriteFile(filepath.Join(one, f), []byte(v), 0o600)).To(Succeed())
	}
	p := check("routes: [{name: o, upstream: https://o.example, auth: {type: none}}]\n", func(o *Options) { o.Bindings = vcap.Sources{BindingsDir: one} })
	only(p, "bindings dir "+one+": it holds binding files itself (type, clientid, clientsecret, url): it looks like one binding's directory")
	g.Expect(strings.Join(problemLines(p.Warnings), "\n")).NotTo(ContainSubstring(checkSecret))
	g.Expect(problemLines(check("routes: [{name: o, upstream: https://o.example, auth: {type: none}}]\n", func(o *Options) { o.Bindings = vcap.Sources{BindingsDir: w.dir} }).Warnings)).
		NotTo(ContainElement(ContainSubstring("one binding's directory")), "a root of binding directories is not warned about")
}

// TestCheckExpiredCertificateDirIsAnError: a directory whose pair expired
// and no pairing URL: run cannot serve the certificate, so it is refused
// at start like a missing one.
func TestCheckExpiredCertificateDirIsAnError(t *testing.T) {
	g := NewWithT(t)
	w := newCheckWorld(t)
	ca := testpki.NewCA()
	old := ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	dir := filepath.Join(w.dir, "old")
	g.Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "tls.crt"), old.CertPEM(), 0o600)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "tls.key"), old.KeyPEM(testpki.PKCS8), 0o600)).To(Succeed())
	p, err := w.broker(t, fmt.Sprintf("certificates: [{name: c, dir: %s}]\nroutes: [{name: e, upstream: https://e.example, auth: {type: mtls, certificate: c}}]\n", dir), nil).Check(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Err()).To(MatchError(And(ContainSubstring(`certificates[0].dir ("c")`), ContainSubstring("expired at"))))
}

// TestCheckTokenCacheDir: validate checks token_cache_dir without creating
// anything; run refuses the same directory with the same message.
func TestCheckTokenCacheDir(t *testing.T) {
	g := NewWithT(t)
	w := newCheckWorld(t)
	notDir := filepath.Join(w.dir, "oauth.key")
	b := w.broker(t, "token_cache_dir: "+notDir+"\nroutes: [{name: o, upstream: https://o.example, auth: {type: none}}]\n", nil)
	p, err := b.Check(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Err()).To(MatchError(ContainSubstring("line 1: token_cache_dir: invalid value: " + notDir + ": not a directory")))
	_, _, lerr := b.Load(context.Background())
	g.Expect(lerr).To(MatchError(p.Err().Error()))

	fresh := filepath.Join(w.dir, "tokens")
	g.Expect(os.Mkdir(fresh, 0o700)).To(Succeed())
	p, err = w.broker(t, "token_cache_dir: "+fresh+"\nroutes: [{name: o, upstream: https://o.example, auth: {type: none}}]\n", nil).Check(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Err()).NotTo(HaveOccurred())
	g.Expect(filepath.Join(fresh, TokenCacheSubdir)).NotTo(BeAnExistingFile(), "validate creates nothing")
}
