package guard

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
)

// pctEncode percent-encodes every byte but the unreserved ones, as Envoy
// does for Cert and Chain.
func pctEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// envoyElement is the element Envoy (SANITIZE_SET / APPEND_FORWARD with
// Cert, Subject and URI) writes for leaf, by the proxy whose URI SAN is by.
func envoyElement(by string, leaf *testpki.Leaf) string {
	sum := sha256.Sum256(leaf.Cert.Raw)
	return fmt.Sprintf(`By=%s;Hash=%s;Cert="%s";Subject="%s";URI=`, by, hex.EncodeToString(sum[:]),
		pctEncode(testpki.EncodeCerts(leaf.Cert)), strings.ReplaceAll(leaf.Cert.Subject.String(), `"`, `\"`))
}

func cfValue(leaf *testpki.Leaf) string { return base64.StdEncoding.EncodeToString(leaf.Cert.Raw) }

func TestParseEnvoyXFCC(t *testing.T) {
	ok := []struct {
		name string
		in   string
		want [][]xfccPair
	}{
		{"one element", `By=spiffe://a;Hash=ab;URI=spiffe://b`, [][]xfccPair{{{"by", "spiffe://a"}, {"hash", "ab"}, {"uri", "spiffe://b"}}}},
		{"quoted separators are literal", `Subject="CN=a,O=b;c=d";DNS=x`, [][]xfccPair{{{"subject", "CN=a,O=b;c=d"}, {"dns", "x"}}}},
		{"escaped quote", `Subject="CN=say \"hi\""`, [][]xfccPair{{{"subject", `CN=say "hi"`}}}},
		{"a backslash before anything else is literal", `Subject="CN=a\,b\\c"`, [][]xfccPair{{{"subject", `CN=a\,b\\c`}}}},
		{"keys are case-insensitive", `HASH=1;cErT="x"`, [][]xfccPair{{{"hash", "1"}, {"cert", "x"}}}},
		{"two elements, joined lines with spaces", `By=a;Hash=1 , By=b;Hash=2`, [][]xfccPair{{{"by", "a"}, {"hash", "1"}}, {{"by", "b"}, {"hash", "2"}}}},
		{"empty values and repeated DNS", `By=;DNS=a;DNS=b`, [][]xfccPair{{{"by", ""}, {"dns", "a"}, {"dns", "b"}}}},
		{"'=' inside an unquoted value", `URI=https://x/?a=b`, [][]xfccPair{{{"uri", "https://x/?a=b"}}}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvoyXFCC(tc.in, 16)
			if err != nil {
				t.Fatalf("parse %q: %v", tc.in, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d elements, want %d: %v", len(got), len(tc.want), got)
			}
			for i := range got {
				if fmt.Sprint(got[i]) != fmt.Sprint(xfccElement(tc.want[i])) {
					t.Errorf("element %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
	bad := []struct {
		name, in, reason string
	}{
		{"empty", ``, ReasonXFCCMalformed},
		{"no equals", `Hash`, ReasonXFCCMalformed},
		{"empty key", `=x`, ReasonXFCCMalformed},
		{"unterminated quote", `Cert="abc`, ReasonXFCCMalformed},
		{"escaped closing quote only", `Cert="abc\"`, ReasonXFCCMalformed},
		{"garbage after the quote", `Cert="abc"def`, ReasonXFCCMalformed},
		{"stray quote in a bare value", `By=a"b`, ReasonXFCCMalformed},
		{"empty element", `By=a,,By=b`, ReasonXFCCMalformed},
		{"trailing comma", `By=a,`, ReasonXFCCMalformed},
		{"trailing semicolon", `By=a;`, ReasonXFCCMalformed},
		{"control character", "Subject=\"a\x01b\"", ReasonXFCCMalformed},
		{"Cert twice", `Cert="a";Cert="b"`, ReasonXFCCMalformed},
		{"Hash twice", `Hash=a;hash=b`, ReasonXFCCMalformed},
		{"too many elements", strings.Repeat("By=a,", 16) + "By=a", ReasonXFCCTooLarge},
		{"too many pairs", strings.Repeat("DNS=a;", maxXFCCPairs) + "DNS=a", ReasonXFCCMalformed},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseEnvoyXFCC(tc.in, 16)
			var xe *xfccError
			if !errors.As(err, &xe) {
				t.Fatalf("parse %q: err = %v, want an xfccError", tc.in, err)
			}
			if xe.reason != tc.reason {
				t.Fatalf("parse %q: reason %s, want %s (%v)", tc.in, xe.reason, tc.reason, err)
			}
		})
	}
}

func TestXFCCReaderTakesTheClientsElement(t *testing.T) {
	ca := testpki.NewCA()
	client := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	gateway := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway"))
	forged := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("forged"))
	// A caller-supplied element, then the gateway's (describing the
	// client), then the sidecar's (describing the gateway).
	hdr := envoyElement("spiffe://x", forged) + "," + envoyElement("", client) + "," + envoyElement("spiffe://sidecar", gateway)
	for _, tc := range []struct {
		hops int
		want string
	}{{1, "CN=gateway"}, {2, "CN=client"}, {3, "CN=forged"}} {
		xr := newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: tc.hops})
		certs, err := xr.parse([]string{hdr})
		if err != nil {
			t.Fatalf("hops %d: %v", tc.hops, err)
		}
		if got := certs[0].Subject.String(); got != tc.want {
			t.Errorf("hops %d: got %s, want %s", tc.hops, got, tc.want)
		}
	}
	xr := newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: 4})
	if _, err := xr.parse([]string{hdr}); err == nil || !strings.Contains(err.Error(), "fewer than xfcc.hops") {
		t.Fatalf("4 hops over 3 elements: err = %v", err)
	}
	// Separate header lines count as elements in order.
	xr = newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: 2})
	certs, err := xr.parse([]string{envoyElement("", client), envoyElement("spiffe://sidecar", gateway)})
	if err != nil || certs[0].Subject.String() != "CN=client" {
		t.Fatalf("two lines: %v %v", certs, err)
	}
}

func TestXFCCProxyURIs(t *testing.T) {
	ca := testpki.NewCA()
	client := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	gw := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway"))
	const gwURI = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	xr := newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: 3, ProxyURIs: []string{gwURI, "spiffe://cluster.local/ns/edge/sa/edge"}})
	good := envoyElement("", client) + "," + envoyElement("spiffe://edge", gw) + "spiffe://cluster.local/ns/edge/sa/edge," +
		envoyElement("spiffe://sidecar", gw) + "spiffe://x;URI=" + gwURI
	certs, err := xr.parse([]string{good})
	if err != nil || certs[0].Subject.CommonName != "client" {
		t.Fatalf("allowed proxies: %v %v", certs, err)
	}
	for name, hdr := range map[string]string{
		"last proxy not allowed":   envoyElement("", client) + "," + envoyElement("", gw) + "spiffe://cluster.local/ns/edge/sa/edge," + envoyElement("", gw) + "spiffe://intruder",
		"middle proxy not allowed": envoyElement("", client) + "," + envoyElement("", gw) + "spiffe://intruder," + envoyElement("", gw) + gwURI,
		"no URI at all":            envoyElement("", client) + "," + envoyElement("", gw) + "," + `By=x;Hash=1`,
		"the URI only in By":       envoyElement("", client) + "," + envoyElement(gwURI, gw) + "," + envoyElement(gwURI, gw),
	} {
		_, err := xr.parse([]string{hdr})
		var xe *xfccError
		if !errors.As(err, &xe) || xe.reason != ReasonXFCCProxyNotAllowed || xe.status != http.StatusForbidden {
			t.Errorf("%s: err = %v, want xfcc_proxy_not_allowed", name, err)
		}
	}
}

func TestXFCCElementCertificates(t *testing.T) {
	root := testpki.NewCA()
	inter := root.NewIntermediate()
	leaf := inter.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	other := root.Issue(testpki.ClientAuth())
	chain := pctEncode(testpki.EncodeCerts(leaf.Cert, inter.Cert))
	cert := pctEncode(testpki.EncodeCerts(leaf.Cert))
	sum := sha256.Sum256(leaf.Cert.Raw)
	hash := hex.EncodeToString(sum[:])

	certs, err := (&xfccReader{format: XFCCAuto, hops: 1, maxBytes: DefaultXFCCMaxBytes, maxElements: 16}).parse([]string{`Hash=` + hash + `;Chain="` + chain + `";Cert="` + cert + `"`})
	if err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "client" {
		t.Fatalf("Cert and Chain: %v %v", certs, err)
	}
	for _, tc := range []struct{ name, in, reason, msg string }{
		{"no Cert or Chain", `By=a;Hash=` + hash + `;Subject="CN=client"`, ReasonXFCCNoCertificate, "no Cert"},
		{"Cert and Chain differ", `Cert="` + pctEncode(testpki.EncodeCerts(other.Cert)) + `";Chain="` + chain + `"`, ReasonXFCCMalformed, "differ"},
		{"Hash of another certificate", `Hash=00` + hash[2:] + `;Cert="` + cert + `"`, ReasonXFCCMalformed, "Hash"},
		{"two certificates in Cert", `Cert="` + chain + `"`, ReasonXFCCMalformed, "more than 1"},
		{"bad percent encoding", `Cert="%zz"`, ReasonXFCCMalformed, "URL encoding"},
		{"not PEM", `Cert="hello"`, ReasonXFCCMalformed, "not a PEM"},
		{"text before the PEM", `Cert="junk` + cert + `"`, ReasonXFCCMalformed, "not a PEM"},
		{"a key instead of a certificate", `Cert="` + pctEncode(leaf.KeyPEM(testpki.PKCS8)) + `"`, ReasonXFCCMalformed, "not a PEM"},
		{"garbage DER", `Cert="-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A"`, ReasonXFCCMalformed, "certificate 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&xfccReader{format: XFCCEnvoy, hops: 1, maxBytes: DefaultXFCCMaxBytes, maxElements: 16}).parse([]string{tc.in})
			var xe *xfccError
			if !errors.As(err, &xe) || xe.reason != tc.reason || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want reason %s with %q", err, tc.reason, tc.msg)
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "PRIVATE") {
				t.Fatalf("error carries header content: %v", err)
			}
		})
	}
}

func TestParseCFXFCC(t *testing.T) {
	leaf := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("cf-client"))
	std := base64.StdEncoding.EncodeToString(leaf.Cert.Raw)
	raw := base64.RawStdEncoding.EncodeToString(leaf.Cert.Raw)
	for _, v := range []string{std, raw, " " + std + " "} {
		c, err := parseCFXFCC(v)
		if err != nil || c.Subject.CommonName != "cf-client" {
			t.Fatalf("parseCFXFCC: %v %v", c, err)
		}
	}
	for _, v := range []string{"", "!!!!", base64.URLEncoding.EncodeToString(append([]byte{0xfb, 0xff}, leaf.Cert.Raw...)),
		base64.StdEncoding.EncodeToString(append(append([]byte{}, leaf.Cert.Raw...), 0)), base64.StdEncoding.EncodeToString([]byte("hello"))} {
		if _, err := parseCFXFCC(v); err == nil {
			t.Fatalf("parseCFXFCC(%.20q) accepted", v)
		}
	}
	xr := newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, Format: XFCCCF})
	if _, err := xr.parse([]string{std, std}); err == nil {
		t.Fatal("two cf header lines accepted")
	}
	if _, err := xr.parse([]string{std + "," + std}); err == nil {
		t.Fatal("a cf list accepted")
	}
}

func TestDetectXFCCFormat(t *testing.T) {
	leaf := testpki.NewCA().Issue(testpki.ClientAuth())
	for in, want := range map[string]string{
		cfValue(leaf):                    XFCCCF,
		envoyElement("spiffe://x", leaf): XFCCEnvoy,
		`hash=1`:                         XFCCEnvoy,
		` Cert="x"`:                      XFCCEnvoy,
		`Other=1`:                        XFCCCF,
		`nothing`:                        XFCCCF,
	} {
		if got := detectXFCCFormat(in); got != want {
			t.Errorf("detect(%.30q) = %s, want %s", in, got, want)
		}
	}
}

func TestXFCCBounds(t *testing.T) {
	xr := newXFCCReader(&XFCC{TrustedProxies: []string{"127.0.0.1"}, MaxBytes: 100, MaxElements: 2})
	for _, vals := range [][]string{{strings.Repeat("a", 101)}, {"By=a", "By=b", "By=c"}, {"By=a,By=b,By=c"}} {
		_, err := xr.parse(vals)
		var xe *xfccError
		if !errors.As(err, &xe) || xe.reason != ReasonXFCCTooLarge || xe.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%.40q: err = %v, want xfcc_too_large", vals, err)
		}
	}
}

func TestXFCCConfigValidation(t *testing.T) {
	base := func() *Config {
		return &Config{Listen: "127.0.0.1:1", App: "http://127.0.0.1:2",
			Rules: []Rule{{Path: "/cb/", Accept: []Method{MethodMTLS}, CAFile: "/ca"}},
			XFCC:  &XFCC{TrustedProxies: []string{"10.0.0.1"}}}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("an mtls rule on a plain listener with xfcc: %v", err)
	}
	noXFCC := base()
	noXFCC.XFCC = nil
	if err := noXFCC.Validate(); err == nil || !strings.Contains(err.Error(), "rules[0].accept") {
		t.Fatalf("mtls on a plain listener without xfcc: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		field  string
	}{
		{"no trusted proxies", func(c *Config) { c.XFCC.TrustedProxies = nil }, "xfcc.trusted_proxies"},
		{"bad proxy", func(c *Config) { c.XFCC.TrustedProxies = []string{"10.0.0.1", "nope"} }, "xfcc.trusted_proxies[1]"},
		{"every address", func(c *Config) { c.XFCC.TrustedProxies = []string{"10.0.0.1", "0.0.0.0/0"} }, "xfcc.trusted_proxies[1]"},
		{"every IPv6 address", func(c *Config) { c.XFCC.TrustedProxies = []string{"::/0"} }, "xfcc.trusted_proxies[0]"},
		{"bad format", func(c *Config) { c.XFCC.Format = "pem" }, "xfcc.format"},
		{"negative hops", func(c *Config) { c.XFCC.Hops = -1 }, "xfcc.hops"},
		{"hops over max_elements", func(c *Config) { c.XFCC.Hops, c.XFCC.MaxElements = 5, 4 }, "xfcc.hops"},
		{"huge max_bytes", func(c *Config) { c.XFCC.MaxBytes = 1 << 30 }, "xfcc.max_bytes"},
		{"huge max_elements", func(c *Config) { c.XFCC.MaxElements = 1000 }, "xfcc.max_elements"},
		{"proxy CA on a plain listener", func(c *Config) { c.XFCC.ProxyCAFile = "/p" }, "xfcc.proxy_ca_file"},
		{"proxy subjects without a CA", func(c *Config) {
			c.TLS = &TLS{Certificate: "s"}
			c.XFCC.ProxySubjects = []string{"CN=gw"}
		}, "xfcc.proxy_subjects"},
		{"proxy_uris with one hop", func(c *Config) { c.XFCC.ProxyURIs = []string{"spiffe://gw"} }, "xfcc.proxy_uris"},
		{"proxy_uris with cf", func(c *Config) { c.XFCC.Hops, c.XFCC.Format, c.XFCC.ProxyURIs = 2, XFCCCF, []string{"spiffe://gw"} }, "xfcc.proxy_uris"},
		{"a proxy URI with a comma", func(c *Config) { c.XFCC.Hops, c.XFCC.ProxyURIs = 2, []string{"spiffe://a,b"} }, "xfcc.proxy_uris[0]"},
		{"no mtls rule", func(c *Config) { c.Rules = []Rule{{Path: "/", Accept: []Method{MethodJWT}, Binding: "b"}} }, "xfcc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			err := c.Validate()
			var fes FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("err = %v", err)
			}
			found := false
			for _, fe := range fes {
				found = found || fe.Field == tc.field
			}
			if !found {
				t.Fatalf("no error on %s: %v", tc.field, err)
			}
		})
	}
}

// xfccEnv is a plain-HTTP guard behind a "front proxy" at trusted: rules
// /cb/ (mtls, CA ca, subject CN=client) and /any/ (mtls, CA ca).
type xfccEnv struct {
	*env
	ca *testpki.CA
}

func startXFCC(t *testing.T, x *XFCC) *xfccEnv {
	t.Helper()
	ca := testpki.NewCA()
	caFile := tempFile(t, t.TempDir(), "ca.crt", ca.CertPEM())
	cfg := &Config{XFCC: x, Rules: []Rule{
		{Path: "/cb/", Accept: []Method{MethodMTLS}, CAFile: caFile, Subjects: []string{"CN=client"}},
		{Path: "/any/", Accept: []Method{MethodMTLS}, CAFile: caFile},
	}}
	return &xfccEnv{env: startGuard(t, cfg, nil, WithResync(time.Hour)), ca: ca}
}

// send sends GET path with the XFCC values, from the local address from.
func (e *xfccEnv) send(t *testing.T, from, path string, xfcc ...string) (*http.Response, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	req, _ := http.NewRequest("GET", e.url+path, nil)
	for _, v := range xfcc {
		req.Header.Add(HeaderXFCC, v)
	}
	req.Header.Set("X_Forwarded_Client_Cert", "look-alike")
	req.Header.Set("X-Ssl-Client-Subject-Dn", "CN=admin")
	return do(t, c, req)
}

func TestXFCCThroughTheGuard(t *testing.T) {
	e := startXFCC(t, &XFCC{TrustedProxies: []string{"127.0.0.1"}})
	client := e.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	noXFCCAtApp := func(t *testing.T) {
		t.Helper()
		for k := range e.app.last().Header {
			if isClientCertHeader(k) {
				t.Fatalf("the app saw %s", k)
			}
		}
	}
	for _, tc := range []struct{ name, value string }{
		{"envoy", envoyElement("spiffe://gw", client)},
		{"cf", cfValue(client)},
	} {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			resp, body := e.send(t, "127.0.0.1", "/cb/x", tc.value)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := e.app.last().Header.Get(HeaderCertSubject); got != "CN=client" {
				t.Fatalf("cert subject at the app = %q", got)
			}
			noXFCCAtApp(t)
		})
	}
	for _, tc := range []struct {
		name, path, value string
		status            int
		reason            string
	}{
		{"another CA", "/cb/x", cfValue(testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))), 403, ReasonUntrustedCert},
		{"a subject outside the allowlist", "/cb/x", envoyElement("", e.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("intruder"))), 403, ReasonSubjectNotAllowed},
		{"an expired certificate", "/any/x", cfValue(e.ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))), 403, ReasonCertExpired},
		{"a server-only certificate", "/any/x", cfValue(e.ca.Issue(testpki.ServerAuth())), 403, ReasonUntrustedCert},
		{"malformed", "/cb/x", `Cert="unterminated`, 400, ReasonXFCCMalformed},
		{"no certificate", "/cb/x", `By=x;Hash=00;Subject="CN=client"`, 400, ReasonXFCCNoCertificate},
		{"too large", "/cb/x", strings.Repeat("A", DefaultXFCCMaxBytes+1), 431, ReasonXFCCTooLarge},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			before := e.app.count()
			resp, body := e.send(t, "127.0.0.1", tc.path, tc.value)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("status %d body %q, want %d %s", resp.StatusCode, body, tc.status, tc.reason)
			}
			if e.app.count() != before {
				t.Fatal("a refused request reached the app")
			}
			if e.obs.get("mtls/refused/"+tc.reason) == 0 {
				t.Fatalf("refusal %s not counted", tc.reason)
			}
		})
	}
	t.Run("ignores it from an untrusted peer", func(t *testing.T) {
		before := e.app.count()
		resp, body := e.send(t, "127.0.0.2", "/cb/x", cfValue(client))
		if resp.StatusCode != 403 || !strings.Contains(body, ReasonXFCCUntrustedPeer) {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if e.app.count() != before {
			t.Fatal("reached the app")
		}
		if !strings.Contains(e.logs.String(), "not in inbound.xfcc.trusted_proxies") {
			t.Fatal("the refusal log does not say why")
		}
	})
}

func TestXFCCHops(t *testing.T) {
	e := startXFCC(t, &XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: 2, Format: XFCCEnvoy})
	client := e.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	gateway := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway"))
	intruder := e.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"), testpki.WithURIs("spiffe://intruder"))
	// The caller's own element comes first and must be ignored even though
	// its certificate would pass.
	resp, body := e.send(t, "127.0.0.1", "/cb/x", envoyElement("", intruder)+","+envoyElement("", client), envoyElement("spiffe://sidecar", gateway))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// With only the gateway's element the client element is missing.
	resp, body = e.send(t, "127.0.0.1", "/cb/x", envoyElement("spiffe://sidecar", gateway))
	if resp.StatusCode != 400 || !strings.Contains(body, ReasonXFCCMalformed) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// Without an xfcc: block a caller's XFCC is never believed and never
// reaches the app; the handshake certificate decides.
func TestXFCCStrippedWithoutConfig(t *testing.T) {
	e := startMTLS(t)
	leaf := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	other := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("admin"))
	for _, c := range []*http.Client{e.client(leaf.TLSCertificate()), e.client()} {
		req, _ := http.NewRequest("GET", e.url+"/callbacks/x", nil)
		req.Header.Set(HeaderXFCC, cfValue(other))
		req.Header.Set("Client-Cert", ":"+cfValue(other)+":")
		resp, body := do(t, c, req)
		if len(c.Transport.(*http.Transport).TLSClientConfig.Certificates) == 0 {
			if resp.StatusCode != 403 || !strings.Contains(body, ReasonXFCCUntrustedPeer) {
				t.Fatalf("no handshake certificate: status %d %s", resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		seen := e.app.last().Header
		if seen.Get(HeaderCertSubject) != "CN=controller,O=Acme" {
			t.Fatalf("identity %q", seen.Get(HeaderCertSubject))
		}
		for k := range seen {
			if isClientCertHeader(k) {
				t.Fatalf("the app saw %s", k)
			}
		}
	}
}

// On a TLS listener with proxy_ca_file, the trusted peer must also present
// its own certificate from that CA.
func TestXFCCProxyCertificate(t *testing.T) {
	serverCA, clientCA, proxyCA := testpki.NewCA(), testpki.NewCA(), testpki.NewCA()
	dir := t.TempDir()
	cfg := &Config{TLS: &TLS{Certificate: "server"}, Rules: []Rule{
		{Path: "/cb/", Accept: []Method{MethodMTLS}, CAFile: tempFile(t, dir, "ca.crt", clientCA.CertPEM())},
	}, XFCC: &XFCC{TrustedProxies: []string{"127.0.0.1"}, ProxyCAFile: tempFile(t, dir, "proxy.crt", proxyCA.CertPEM()), ProxySubjects: []string{"CN=gateway"}}}
	e := startGuard(t, cfg, serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost")), WithResync(time.Hour))
	client := clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	get := func(certs ...tls.Certificate) (*http.Response, string) {
		req, _ := http.NewRequest("GET", e.url+"/cb/x", nil)
		req.Header.Set(HeaderXFCC, envoyElement("", client))
		return do(t, tlsClient(serverCA.Pool(), "guard.localhost", certs...), req)
	}
	resp, body := get(proxyCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway")).TLSCertificate())
	if resp.StatusCode != 200 || e.app.last().Header.Get(HeaderCertSubject) != "CN=client" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for name, certs := range map[string][]tls.Certificate{
		"no proxy certificate":      nil,
		"another proxy subject":     {proxyCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("other")).TLSCertificate()},
		"a proxy from another CA":   {testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway")).TLSCertificate()},
		"the client's own cert too": {client.TLSCertificate()},
	} {
		resp, body := get(certs...)
		if resp.StatusCode != 403 || !strings.Contains(body, ReasonXFCCProxyNotAllowed) {
			t.Fatalf("%s: status %d %s", name, resp.StatusCode, body)
		}
	}
}

// FuzzXFCC: any header lines either parse into at least one certificate or
// fail with an xfccError carrying a known reason and a 4xx status; never a
// panic, in any format or hop count.
func FuzzXFCC(f *testing.F) {
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("client"))
	f.Add(envoyElement("spiffe://gw", leaf), "", uint8(1), uint8(0))
	f.Add(envoyElement("", leaf), envoyElement("spiffe://sidecar", leaf), uint8(2), uint8(1))
	f.Add(envoyElement("", leaf), envoyElement("spiffe://sidecar", leaf)+"spiffe://gw", uint8(1), uint8(129))
	f.Add(cfValue(leaf), "", uint8(1), uint8(2))
	f.Add(`By=a;Subject="CN=x\"y,z";URI=;DNS=a;DNS=b,Hash=1`, "", uint8(3), uint8(0))
	f.Add(`Cert="-----BEGIN%20CERTIFICATE-----%0A`, `"`, uint8(1), uint8(1))
	formats := []string{XFCCAuto, XFCCEnvoy, XFCCCF}
	reasons := map[string]bool{ReasonXFCCMalformed: true, ReasonXFCCTooLarge: true, ReasonXFCCNoCertificate: true, ReasonXFCCProxyNotAllowed: true}
	f.Fuzz(func(t *testing.T, a, b string, hops, format uint8) {
		x := &XFCC{TrustedProxies: []string{"127.0.0.1"}, Hops: int(hops%4) + 1,
			Format: formats[int(format)%len(formats)], MaxBytes: 4 << 10, MaxElements: 8}
		if format >= 128 {
			x.ProxyURIs = []string{"spiffe://gw"}
		}
		xr := newXFCCReader(x)
		vals := []string{a}
		if b != "" {
			vals = append(vals, b)
		}
		certs, err := xr.parse(vals)
		if err == nil {
			if len(certs) == 0 || certs[0] == nil {
				t.Fatal("no error and no certificate")
			}
			return
		}
		var xe *xfccError
		if !errors.As(err, &xe) || !reasons[xe.reason] || xe.status < 400 || xe.status > 499 {
			t.Fatalf("error %T %v: not a refusal with a known reason", err, err)
		}
	})
}
