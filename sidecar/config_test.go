package sidecar

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/sidecar/guard"
)

const goodConfig = `
listen: 127.0.0.1:8411
admin_listen: 127.0.0.1:9411
routes:
  - name: orders
    upstream: https://orders.example.com/api
    auth: {type: bearer, binding: my-xsuaa, scopes: [orders.read], tenant_header: X-Tenant}
  - name: events
    upstream: https://gateway.example.com
    auth: {type: mtls, certificate: connector}
  - name: controller
    upstream: https://controller.example.com
    auth: {type: oauth1, key_file: /etc/aps/key, secret_file: /etc/aps/secret}
  - name: open
    upstream: http://plain.example.com
    auth: {type: none}
certificates:
  - name: connector
    dir: /var/run/credbroker/connector
    pairing_url_file: /etc/credbroker/pairing-url
    renew: true
  - name: xsuaa-x509
    binding: my-xsuaa
token_api:
  bindings: [my-xsuaa]
`

func TestParseConfigDefaults(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig([]byte(goodConfig), "config test.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Routes).To(HaveLen(4))
	g.Expect(cfg.Routes[0].Auth.Grant).To(Equal(GrantClientCredentials))
	g.Expect(cfg.Routes[0].Auth.Replace()).To(BeTrue())
	g.Expect(cfg.Routes[0].Auth.Scopes).To(Equal([]string{"orders.read"}))
	g.Expect(cfg.Certificates[0].Renew).To(BeTrue())
	g.Expect(cfg.DrainTimeout).To(Equal(DefaultDrainTimeout))
	g.Expect(cfg.Timeouts.ResponseHeader).To(Equal(DefaultResponseHeader))
	g.Expect(cfg.MaxIdleConnsPerHost).To(Equal(DefaultMaxIdleConnsPerHost))
	g.Expect(cfg.TokenAPI.Allows("my-xsuaa")).To(BeTrue())
	g.Expect(cfg.TokenAPI.Allows("other")).To(BeFalse())

	two, err := ParseConfig([]byte("certificates: [{name: c, dir: /x, runtime_dir: /y, renew: true}]\nroutes: [{name: e, upstream: https://e.example, auth: {type: mtls, certificate: c-runtime}}]\n"), "x")
	g.Expect(err).NotTo(HaveOccurred(), "the runtime certificate is addressable as <name>-runtime")
	g.Expect(two.Certificates[0].RuntimeName()).To(Equal("c-runtime"))

	empty, err := ParseConfig(nil, "empty")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(empty.Listen).To(Equal(DefaultListen))
	g.Expect(empty.AdminListen).To(Equal(DefaultAdminListen))
	g.Expect(empty.TokenAPI.Allows("x")).To(BeFalse(), "the token API is off by default")

	d, err := ParseConfig([]byte("drain_timeout: 3s\ntimeouts: {dial: 1s}\nroutes:\n- {name: u, upstream: https://u.example, auth: {type: bearer, binding: b, grant: jwt-bearer, replace_app_credentials: false}}\n"), "x")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.DrainTimeout).To(Equal(3 * time.Second))
	g.Expect(d.Timeouts.Dial).To(Equal(time.Second))
	g.Expect(d.Routes[0].Auth.Grant).To(Equal(GrantJWTBearer))
	g.Expect(d.Routes[0].Auth.Replace()).To(BeFalse())
}

func TestParseConfigErrors(t *testing.T) {
	route := func(s string) string { return "routes:\n  - " + s + "\n" }
	cases := []struct {
		name     string
		yaml     string
		sentinel error
		want     []string // substrings of the message
	}{
		{"unknown top-level key", "listen: 127.0.0.1:1\nlisten_addr: x\n", ErrUnknownKey, []string{"line 2", "listen_addr", "unknown key"}},
		{"unknown auth key", route("{name: a, upstream: https://a.example,\n    auth: {type: bearer, binding: b, scope: [x]}}"), ErrUnknownKey, []string{"line 3", "scope"}},
		{"inbound incomplete", "inbound: {listen: 0.0.0.0:8443}\n", guard.ErrConfig, []string{"line 1", "inbound.app"}},
		{"inbound unknown key", "inbound:\n  listen: 0.0.0.0:8443\n  app: http://127.0.0.1:8080\n  rulez: []\n", ErrUnknownKey, []string{"line 4", "rulez"}},
		{"inbound unknown certificate", "inbound:\n  listen: 0.0.0.0:8443\n  tls: {certificate: nope}\n  app: http://127.0.0.1:8080\n  rules: [{path: /, accept: [mtls], ca_file: /ca.crt}]\n", ErrUnknownCertificate, []string{"line 3", "inbound.tls.certificate"}},
		{"syntax", "routes: [\n", ErrConfigSyntax, []string{"config x"}},
		{"wrong type", "drain_timeout: soon\n", ErrInvalidValue, []string{"line 1"}},
		{"route without upstream", route("{name: orders, auth: {type: none}}"), ErrMissingValue, []string{"line 2", "routes[0].upstream", `"orders"`}},
		{"bad upstream scheme", route("{name: a, upstream: ftp://a.example, auth: {type: none}}"), ErrInvalidValue, []string{"routes[0].upstream"}},
		{"upstream with user info", route("{name: a, upstream: 'https://u:p@a.example', auth: {type: none}}"), ErrInvalidValue, []string{"no user info"}},
		{"missing name", route("{upstream: https://a.example, auth: {type: none}}"), ErrMissingValue, []string{"routes[0].name"}},
		{"name with slash", route("{name: a/b, upstream: https://a.example, auth: {type: none}}"), ErrInvalidValue, []string{"routes[0].name"}},
		{"name with dot first", route("{name: .credbroker, upstream: https://a.example, auth: {type: none}}"), ErrInvalidValue, []string{"routes[0].name"}},
		{"duplicate route", "routes:\n  - {name: a, upstream: https://a.example, auth: {type: none}}\n  - {name: a, upstream: https://b.example, auth: {type: none}}\n", ErrDuplicateName, []string{"line 3", "routes[1].name", "also routes[0]"}},
		{"missing auth type", route("{name: a, upstream: https://a.example}"), ErrMissingValue, []string{"routes[0].auth.type"}},
		{"unknown auth type", route("{name: a, upstream: https://a.example, auth: {type: basic}}"), ErrInvalidValue, []string{`"basic"`}},
		{"bearer without binding", route("{name: a, upstream: https://a.example, auth: {type: bearer}}"), ErrMissingValue, []string{"routes[0].auth.binding"}},
		{"bad grant", route("{name: a, upstream: https://a.example, auth: {type: bearer, binding: b, grant: password}}"), ErrInvalidValue, []string{"routes[0].auth.grant"}},
		{"bad tenant header", route("{name: a, upstream: https://a.example, auth: {type: bearer, binding: b, tenant_header: 'X Tenant'}}"), ErrInvalidValue, []string{"tenant_header"}},
		{"scopes on none", route("{name: a, upstream: https://a.example, auth: {type: none, scopes: [x]}}"), ErrInvalidValue, []string{"routes[0].auth"}},
		{"mtls without certificate", route("{name: a, upstream: https://a.example, auth: {type: mtls}}"), ErrMissingValue, []string{"routes[0].auth.certificate"}},
		{"mtls with unknown certificate", route("{name: a, upstream: https://a.example, auth: {type: mtls, certificate: nope}}"), ErrUnknownCertificate, []string{`"nope"`}},
		{"mtls over http", "certificates: [{name: c, dir: /x}]\n" + route("{name: a, upstream: http://a.example, auth: {type: mtls, certificate: c}}"), ErrInvalidValue, []string{"https://"}},
		{"oauth1 without key", route("{name: a, upstream: https://a.example, auth: {type: oauth1, secret_file: /s}}"), ErrMissingValue, []string{"routes[0].auth.key_file"}},
		{"oauth1 without secret", route("{name: a, upstream: https://a.example, auth: {type: oauth1, key_file: /k}}"), ErrMissingValue, []string{"routes[0].auth.secret_file"}},
		{"certificate without source", "certificates: [{name: c}]\n", ErrMissingValue, []string{"certificates[0]", "dir or binding"}},
		{"certificate with both sources", "certificates: [{name: c, dir: /x, binding: b}]\n", ErrInvalidValue, []string{"exclusive"}},
		{"binding certificate cannot renew", "certificates: [{name: c, binding: b, renew: true}]\n", ErrInvalidValue, []string{"renew"}},
		{"runtime_dir same as dir", "certificates: [{name: c, dir: /x, runtime_dir: /x/}]\n", ErrInvalidValue, []string{"certificates[0].runtime_dir", "must differ"}},
		{"runtime_dir on a binding certificate", "certificates: [{name: c, binding: b, runtime_dir: /y}]\n", ErrInvalidValue, []string{"runtime_dir need dir"}},
		{"runtime name taken", "certificates: [{name: c, dir: /x, runtime_dir: /y}, {name: c-runtime, dir: /z}]\n", ErrDuplicateName, []string{"certificates[1].name"}},
		{"bad key type", "certificates: [{name: c, dir: /x, pairing_url_file: /p, key_type: dsa}]\n", ErrInvalidValue, []string{"certificates[0].key_type", "ecdsa-p256"}},
		{"key type without pairing", "certificates: [{name: c, dir: /x, key_type: ecdsa-p256}]\n", ErrInvalidValue, []string{"key_type is for pairing"}},
		{"duplicate certificate", "certificates: [{name: c, dir: /x}, {name: c, dir: /y}]\n", ErrDuplicateName, []string{"certificates[1].name"}},
		{"non-loopback listen", "listen: 0.0.0.0:8411\n", ErrNonLoopback, []string{"line 1", "listen", "allow_non_loopback"}},
		{"all interfaces", "admin_listen: ':9411'\n", ErrNonLoopback, []string{"admin_listen"}},
		{"listen without port", "listen: 127.0.0.1\n", ErrInvalidValue, []string{"HOST:PORT"}},
		{"negative drain", "drain_timeout: -1s\n", ErrInvalidValue, []string{"drain_timeout"}},
		{"bad resolve rule", "resolve: [nonsense]\n", ErrInvalidValue, []string{"PATTERN=ADDR"}},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", ErrConfigSyntax, []string{"more than one"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := ParseConfig([]byte(tc.yaml), "config x")
			g.Expect(err).To(HaveOccurred())
			g.Expect(errors.Is(err, tc.sentinel)).To(BeTrue(), "got %v", err)
			var ce *ConfigError
			g.Expect(errors.As(err, &ce)).To(BeTrue())
			for _, w := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}
}

func TestParseConfigNeverQuotesValues(t *testing.T) {
	g := NewWithT(t)
	// A secret pasted under the wrong key or with the wrong type must not be
	// echoed back in the error.
	_, err := ParseConfig([]byte("drain_timeout: planted-secret-value-123\n"), "x")
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(ContainSubstring("planted-secret-value-123"))
	_, err = ParseConfig([]byte("max_idle_conns_per_host: planted-secret-value-456\n"), "x")
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(ContainSubstring("planted-secret-value-456"))
}

func TestOverrideListen(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig([]byte("listen: 127.0.0.1:1000\n"), "x")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Override("127.0.0.1:2000", "", false)).To(Succeed())
	g.Expect(cfg.Listen).To(Equal("127.0.0.1:2000"))
	err = cfg.Override("0.0.0.0:2000", "", false)
	g.Expect(errors.Is(err, ErrNonLoopback)).To(BeTrue())
	g.Expect(err.Error()).NotTo(ContainSubstring("line"), "a flag has no line")
	g.Expect(cfg.Override("0.0.0.0:2000", "[::1]:3000", true)).To(Succeed())
	g.Expect(cfg.AdminListen).To(Equal("[::1]:3000"))
}

func TestValidateBindings(t *testing.T) {
	lookup := func(name string) (BindingInfo, bool) {
		switch name {
		case "my-xsuaa":
			return BindingInfo{Auth: true, Certificate: true}, true
		case "secret-xsuaa":
			return BindingInfo{Auth: true}, true
		case "db":
			return BindingInfo{}, true
		}
		return BindingInfo{}, false
	}
	cases := []struct {
		name     string
		yaml     string
		sentinel error
		want     string
	}{
		{"good", goodConfig, nil, ""},
		{"unknown route binding", "routes: [{name: a, upstream: https://a.example, auth: {type: bearer, binding: nope}}]\n", ErrUnknownBinding, `routes[0].auth.binding ("a"): unknown binding: "nope"`},
		{"not an auth binding", "routes: [{name: a, upstream: https://a.example, auth: {type: bearer, binding: db}}]\n", ErrInvalidValue, "not an xsuaa or identity binding"},
		{"certificate binding without certificate", "certificates: [{name: c, binding: secret-xsuaa}]\n", ErrInvalidValue, "carries no certificate"},
		{"unknown certificate binding", "certificates: [{name: c, binding: gone}]\n", ErrUnknownBinding, "certificates[0].binding"},
		{"unknown token API binding", "token_api: {bindings: [gone]}\n", ErrUnknownBinding, "token_api.bindings[0]"},
		{"token API wildcard", "token_api: {bindings: ['*']}\n", nil, ""},
		{"unknown inbound jwt binding", "inbound: {listen: 0.0.0.0:8443, app: 'http://127.0.0.1:8080', rules: [{path: /, accept: [jwt], binding: gone}]}\n", ErrUnknownBinding, "inbound.rules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg, err := ParseConfig([]byte(tc.yaml), "config x")
			g.Expect(err).NotTo(HaveOccurred())
			err = cfg.Validate(lookup)
			if tc.sentinel == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(errors.Is(err, tc.sentinel)).To(BeTrue(), "got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			g.Expect(err.Error()).To(ContainSubstring("line 1"))
		})
	}
}
