package guard

import (
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"
)

const designExample = `
listen: 0.0.0.0:8443
tls: {certificate: server}
app: http://127.0.0.1:8080
trusted_proxies: [10.0.0.0/8, 127.0.0.1, "::1"]
rules:
  - {path: /api/, accept: [jwt], binding: my-xsuaa, scopes: [read]}
  - {path: /aps/, accept: [oauth1], oauth1: {key_file: /etc/aps/key, secret_file: /etc/aps/secret}}
  - {path: /callbacks/, accept: [mtls], ca_file: /etc/controller/ca.crt, subjects: ["CN=controller"], sans: [controller.example.com], crl_file: /etc/controller/crl.pem}
  - {path: /both/, accept: [jwt, mtls], binding: my-ias, ca_file: /etc/controller/ca.crt}
`

func decode(t *testing.T, s string) (*Config, error) {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(s))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func TestConfigDesignExample(t *testing.T) {
	g := NewWithT(t)
	c, err := decode(t, designExample)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Validate()).To(Succeed())
	g.Expect(c.Listen).To(Equal("0.0.0.0:8443"))
	g.Expect(c.TLS.Certificate).To(Equal("server"))
	g.Expect(c.Rules).To(HaveLen(4))
	g.Expect(c.Rules[0].Accept).To(Equal([]Method{MethodJWT}))
	g.Expect(c.Rules[0].Scopes).To(Equal([]string{"read"}))
	g.Expect(c.Rules[1].OAuth1).To(Equal(&OAuth1{KeyFile: "/etc/aps/key", SecretFile: "/etc/aps/secret"}))
	g.Expect(c.Rules[2].Subjects).To(Equal([]string{"CN=controller"}))
	g.Expect(c.Rules[2].CRLFile).To(Equal("/etc/controller/crl.pem"))
	g.Expect(c.JWTBindings()).To(Equal([]string{"my-xsuaa", "my-ias"}))
}

func TestConfigUnknownKeyRefusedByStrictDecoding(t *testing.T) {
	g := NewWithT(t)
	_, err := decode(t, "listen: :1\napp: http://x\nrules: [{path: /, accept: [jwt], binding: b, scope: [x]}]\n")
	g.Expect(err).To(MatchError(ContainSubstring("field scope not found")))
}

func TestConfigValidate(t *testing.T) {
	base := func() *Config {
		return &Config{Listen: ":8443", TLS: &TLS{Certificate: "server"}, App: "http://127.0.0.1:8080",
			Rules: []Rule{{Path: "/", Accept: []Method{MethodJWT}, Binding: "b"}}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		fields []string // expected field paths, in order
	}{
		{"valid", func(c *Config) {}, nil},
		{"plain HTTP with jwt", func(c *Config) { c.TLS = nil }, nil},
		{"no listen", func(c *Config) { c.Listen = "" }, []string{"listen"}},
		{"bad listen", func(c *Config) { c.Listen = "8443" }, []string{"listen"}},
		{"bad port", func(c *Config) { c.Listen = ":99999" }, []string{"listen"}},
		{"tls without certificate", func(c *Config) { c.TLS = &TLS{} }, []string{"tls.certificate"}},
		{"no app", func(c *Config) { c.App = "" }, []string{"app"}},
		{"relative app", func(c *Config) { c.App = "127.0.0.1:8080" }, []string{"app"}},
		{"app with query", func(c *Config) { c.App = "http://127.0.0.1:8080/?x=1" }, []string{"app"}},
		{"bad proxy", func(c *Config) { c.TrustedProxies = []string{"10.0.0.1", "nope", "10.0.0.0/33"} }, []string{"trusted_proxies[1]", "trusted_proxies[2]"}},
		{"no rules", func(c *Config) { c.Rules = nil }, []string{"rules"}},
		{"no path", func(c *Config) { c.Rules[0].Path = "" }, []string{"rules[0].path"}},
		{"relative path", func(c *Config) { c.Rules[0].Path = "api/" }, []string{"rules[0].path"}},
		{"duplicate path", func(c *Config) { c.Rules = append(c.Rules, c.Rules[0]) }, []string{"rules[1].path"}},
		{"no accept", func(c *Config) { c.Rules[0].Accept = nil }, []string{"rules[0].accept", "rules[0].binding"}},
		{"unknown method", func(c *Config) { c.Rules[0].Accept = []Method{"basic"} }, []string{"rules[0].accept[0]", "rules[0].binding"}},
		{"method twice", func(c *Config) { c.Rules[0].Accept = []Method{"jwt", "jwt"} }, []string{"rules[0].accept[1]"}},
		{"jwt without binding", func(c *Config) { c.Rules[0].Binding = "" }, []string{"rules[0].binding"}},
		{"bad scope", func(c *Config) { c.Rules[0].Scopes = []string{"a b"} }, []string{"rules[0].scopes[0]"}},
		{"oauth1 without files", func(c *Config) {
			c.Rules[0] = Rule{Path: "/", Accept: []Method{MethodOAuth1}}
		}, []string{"rules[0].oauth1"}},
		{"oauth1 without secret file", func(c *Config) {
			c.Rules[0] = Rule{Path: "/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: "k"}}
		}, []string{"rules[0].oauth1.secret_file"}},
		{"mtls without ca_file", func(c *Config) {
			c.Rules[0] = Rule{Path: "/", Accept: []Method{MethodMTLS}}
		}, []string{"rules[0].ca_file"}},
		{"mtls on plain HTTP", func(c *Config) {
			c.TLS = nil
			c.Rules[0] = Rule{Path: "/", Accept: []Method{MethodMTLS}, CAFile: "ca"}
		}, []string{"rules[0].accept"}},
		{"stray keys", func(c *Config) {
			c.Rules[0] = Rule{Path: "/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: "k", SecretFile: "s"},
				Binding: "b", Scopes: []string{"x"}, CAFile: "ca", Subjects: []string{"CN=x"}, SANs: []string{"x"}, CRLFile: "crl"}
		}, []string{"rules[0].binding", "rules[0].scopes", "rules[0].ca_file", "rules[0].subjects", "rules[0].sans", "rules[0].crl_file"}},
		{"stray oauth1", func(c *Config) { c.Rules[0].OAuth1 = &OAuth1{KeyFile: "k", SecretFile: "s"} }, []string{"rules[0].oauth1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := base()
			tc.mutate(c)
			err := c.Validate()
			if tc.fields == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ErrConfig))
			var fe FieldErrors
			g.Expect(errors.As(err, &fe)).To(BeTrue())
			var got []string
			for _, e := range fe {
				got = append(got, e.Field)
				g.Expect(e.Error()).To(HavePrefix("guard: inbound." + e.Field + ": "))
			}
			g.Expect(got).To(Equal(tc.fields))
		})
	}
}
