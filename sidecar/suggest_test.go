package sidecar

import (
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestDidYouMean(t *testing.T) {
	g := NewWithT(t)
	keys := []string{"listen", "admin_listen", "drain_timeout", "routes", "certificates", "token_api"}
	for in, want := range map[string]string{
		"drain_timout":  "drain_timeout",
		"Drain-Timeout": "drain_timeout", // case and - versus _ cost nothing
		"route":         "routes",
		"certificate":   "certificates",
		"admin-listen":  "admin_listen",
		"tokenapi":      "token_api",
		"lsten":         "listen",
		"upstream":      "", // nothing close
		"x":             "",
		"":              "",
		"routes":        "", // a name is never its own suggestion
	} {
		g.Expect(didYouMean(in, keys)).To(Equal(want), in)
	}
	g.Expect(didYouMean("my-xsuaaa", []string{"ias", "my-xsuaa", "db"})).To(Equal("my-xsuaa"))
	g.Expect(didYouMean("orders-xsuaa", []string{"ias", "my-xsuaa"})).To(Equal(""))
	// A hostile length costs at most 64×64 steps.
	g.Expect(editDistance(strings.Repeat("a", 1<<20), strings.Repeat("b", 1<<20))).To(Equal(64))
	g.Expect(editDistance("kitten", "sitting")).To(Equal(3))
}

// TestParseConfigReportsEveryProblem: one unknown key no longer hides the
// rest; every problem comes with its line and key, sorted by line, and a
// mistake is reported once (a misspelt key is not also a missing value).
func TestParseConfigReportsEveryProblem(t *testing.T) {
	g := NewWithT(t)
	yaml := `listen: 127.0.0.1:8411
drain_timout: 5s
client_idle_timeout: 20
max_token_keys: lots
certificates:
  - {name: connector, dir: /x}
routes:
  - name: orders
    upstream: https://orders.example.com
    auth: {type: bearer, bindng: my-xsuaa}
  - name: events
    upstream: https://gateway.example.com
    auth: {type: mtls, certificate: conector}
  - name: open
    upstream: https://open.example.com
    auth: [none]
inbound:
  listen: 127.0.0.1:8443
  app: http://127.0.0.1:8080
  rulez: []
`
	cfg, errs := ParseConfigAll([]byte(yaml), "config c.yaml")
	g.Expect(cfg).NotTo(BeNil(), "what decoded is returned for the checks that need bindings and files")
	var lines []string
	for _, e := range errs {
		lines = append(lines, e.Error())
	}
	g.Expect(lines).To(HaveExactElements(
		`sidecar: config c.yaml line 2: drain_timout: unknown key: did you mean "drain_timeout"?`,
		`sidecar: config c.yaml line 3: client_idle_timeout: invalid value: want a duration with a unit: 20s, not 20`,
		`sidecar: config c.yaml line 4: max_token_keys: invalid value: cannot unmarshal !!str value into int`,
		`sidecar: config c.yaml line 10: routes[0].auth.bindng: unknown key: did you mean "binding"?`,
		`sidecar: config c.yaml line 13: routes[1].auth.certificate ("events"): unknown certificate: "conector" is not in certificates; did you mean "connector"? (certificates: connector)`,
		`sidecar: config c.yaml line 16: routes[2].auth: invalid value: cannot unmarshal !!seq into sidecar.RouteAuth`,
		`sidecar: config c.yaml line 20: inbound.rulez: unknown key: did you mean "rules"?`,
	))
	g.Expect(errors.Is(errs, ErrUnknownKey)).To(BeTrue())
	g.Expect(errors.Is(errs, ErrUnknownCertificate)).To(BeTrue())
	g.Expect(errs.Error()).NotTo(ContainSubstring("lots"), "a value is never echoed")

	_, err := ParseConfig([]byte(yaml), "config c.yaml")
	g.Expect(err).To(MatchError(errs.Error()), "ParseConfig reports the same problems")

	// Without a close key, the keys that exist there are listed.
	_, errs = ParseConfigAll([]byte("timeouts: {connect: 1s}\n"), "x")
	g.Expect(errs).To(HaveLen(1))
	g.Expect(errs[0].Error()).To(Equal("sidecar: x line 1: timeouts.connect: unknown key: not a key of timeouts (its keys: dial, idle_conn, response_header, tls_handshake)"))

	// Malformed YAML stops there: nothing else can be read.
	cfg, errs = ParseConfigAll([]byte("routes: [\n"), "x")
	g.Expect(cfg).To(BeNil())
	g.Expect(errors.Is(errs, ErrConfigSyntax)).To(BeTrue())

	// A merge key is not an unknown key.
	_, err = ParseConfig([]byte("x-defaults: &d {type: none}\n"), "x")
	g.Expect(err).To(MatchError(ContainSubstring("x-defaults")))
	_, err = ParseConfig([]byte("routes:\n  - name: a\n    upstream: https://a.example\n    auth:\n      <<: {type: none}\n"), "x")
	g.Expect(err).NotTo(HaveOccurred())
}

func TestValidateBindingsSuggests(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig([]byte("routes:\n  - {name: o, upstream: https://o.example, auth: {type: bearer, binding: my-xsuaaa}}\n"), "config c.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	lookup := func(name string) (BindingInfo, bool) {
		return BindingInfo{Auth: true}, name == "my-xsuaa" || name == "ias"
	}
	err = cfg.ValidateBindings(lookup, []string{"ias", "my-xsuaa"})
	g.Expect(err).To(MatchError(`sidecar: config c.yaml line 2: routes[0].auth.binding ("o"): unknown binding: "my-xsuaaa"; did you mean "my-xsuaa"? (bindings: ias, my-xsuaa)`))
	err = cfg.ValidateBindings(lookup, []string{})
	g.Expect(err).To(MatchError(ContainSubstring(`unknown binding: "my-xsuaaa" (there are no bindings)`)))
}
