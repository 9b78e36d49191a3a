package sidecar

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

// The line and key of a value of the wrong type come from the YAML nodes,
// not from the library's message: every one is found, inside sequences,
// flow mappings and behind aliases, and the value is never echoed.
func TestValueErrorsTakePositionsFromNodes(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"max_token_keys: lots\n", "x line 1: max_token_keys: invalid value: cannot unmarshal !!str value into int"},
		{"\n\nroutes:\n  - name: a\n    upstream: https://a.example\n    auth: {type: none, scopes: {a: b}}\n", "x line 6: routes[0].auth.scopes: invalid value: cannot unmarshal !!map into []string"},
		{"routes:\n  - name: a\n    upstream: https://a.example\n    auth: {type: none}\n  - secret-in-the-wrong-place\n", "x line 5: routes[1]: invalid value: cannot unmarshal !!str value into sidecar.Route"},
		{"d: &d 7\ntimeouts:\n  dial: *d\n", "x line 1: timeouts.dial: invalid value: want a duration with a unit: 7s, not 7"},
		{"resolve: [a.example=127.0.0.1:1, [x]]\n", "x line 1: resolve[1]: invalid value: cannot unmarshal !!seq into string"},
	}
	for _, tc := range cases {
		g := NewWithT(t)
		_, err := ParseConfig([]byte(tc.yaml), "x")
		g.Expect(err).To(MatchError(ContainSubstring(tc.want)), tc.yaml)
		g.Expect(errors.Is(err, ErrInvalidValue)).To(BeTrue(), tc.yaml)
		g.Expect(err.Error()).NotTo(ContainSubstring("lots"))
		g.Expect(err.Error()).NotTo(ContainSubstring("secret-in-the-wrong-place"))
	}

	// Two problems in one file: both, each at its own line.
	g := NewWithT(t)
	_, errs := ParseConfigAll([]byte("max_token_keys: many\ndrain_timeout: 3\n"), "x")
	g.Expect(errs).To(HaveLen(2))
	g.Expect(errs[0].Line).To(Equal(1))
	g.Expect(errs[0].Field).To(Equal("max_token_keys"))
	g.Expect(errs[1].Line).To(Equal(2))
	g.Expect(errs[1].Field).To(Equal("drain_timeout"))

	// Malformed YAML: the library's own message (it names the line).
	_, errs = ParseConfigAll([]byte("listen: a\n  routes: [\n"), "x")
	g.Expect(errs).To(HaveLen(1))
	g.Expect(errors.Is(errs, ErrConfigSyntax)).To(BeTrue())
	g.Expect(errs[0].Error()).To(ContainSubstring("line 2"))
}
