package sidecar

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

func TestGrantSpellings(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string]string{
		"":                   GrantClientCredentials,
		"client_credentials": GrantClientCredentials,
		"client-credentials": GrantClientCredentials,
		"Client_Credentials": GrantClientCredentials,
		"jwt-bearer":         GrantJWTBearer,
		"jwt_bearer":         GrantJWTBearer,
		GrantJWTBearer:       GrantJWTBearer,
	} {
		cfg, err := ParseConfig([]byte("routes:\n- {name: r, upstream: https://u.example, auth: {type: bearer, binding: b, grant: \""+in+"\"}}\n"), "x")
		g.Expect(err).NotTo(HaveOccurred(), in)
		g.Expect(cfg.Routes[0].Auth.Grant).To(Equal(want), in)
	}
	_, err := ParseConfig([]byte("routes:\n- {name: r, upstream: https://u.example, auth: {type: bearer, binding: b, grant: password}}\n"), "x")
	g.Expect(err).To(MatchError(ContainSubstring(`routes[0].auth.grant ("r"): invalid value: "password": want client_credentials or jwt-bearer`)))
}

func TestDurationWithoutUnitNamesTheKey(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct{ yaml, want string }{
		{"drain_timeout: 20\n", "x line 1: drain_timeout: invalid value: want a duration with a unit: 20s, not 20"},
		{"timeouts:\n  dial: 1.5\n", "x line 2: timeouts.dial: invalid value: want a duration with a unit: 1.5s, not 1.5"},
		{"timeouts: {idle_conn: 90, dial: 2s}\n", "x line 1: timeouts.idle_conn: invalid value: want a duration with a unit: 90s, not 90"},
		{"client_idle_timeout: soon\n", "x line 1: client_idle_timeout: invalid value: want a duration with a unit, such as 20s or 1m30s"},
		{"inbound:\n  listen: 127.0.0.1:8443\n  app: http://127.0.0.1:8080\n  limits: {body_timeout: 5}\n", "x line 4: inbound.limits.body_timeout: invalid value: want a duration with a unit: 5s, not 5"},
	} {
		_, err := ParseConfig([]byte(tc.yaml), "x")
		g.Expect(err).To(MatchError(ContainSubstring(tc.want)), tc.yaml)
		g.Expect(errors.Is(err, ErrInvalidValue)).To(BeTrue())
	}
}
