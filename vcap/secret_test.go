package vcap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestSecretNeverPrints(t *testing.T) {
	g := NewWithT(t)
	const planted = "planted-client-secret-7f3a"
	s := Secret(planted)
	g.Expect(s.Reveal()).To(Equal(planted))

	k, err := NewPrivateKey(testpki.NewKey(testpki.ECDSAP256), "test")
	g.Expect(err).NotTo(HaveOccurred())
	keyPEM := k.PEM().Reveal()
	g.Expect(keyPEM).To(HavePrefix("-----BEGIN PRIVATE KEY-----"))
	creds := NewCredentials(map[string]any{"clientsecret": planted, "key": keyPEM})

	type holder struct {
		S Secret
		K *PrivateKey
		C Credentials
	}
	h := holder{S: s, K: k, C: creds}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-20v"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, k), fmt.Sprintf(verb, creds), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	out = append(out, fmt.Sprint(s, k, creds), fmt.Sprintln(h), s.String(), s.GoString(), k.String(), k.GoString(), creds.GoString())
	js, err := json.Marshal(h)
	g.Expect(err).NotTo(HaveOccurred())
	txt, _ := s.MarshalText()
	ktxt, _ := k.MarshalText()
	ctxt, _ := creds.MarshalText()
	out = append(out, string(js), string(txt), string(ktxt), string(ctxt))

	var logs bytes.Buffer
	for _, hd := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		l := slog.New(hd)
		l.Info("x", "secret", s, "key", k, "creds", creds, "holder", h)
	}
	out = append(out, logs.String())

	for _, o := range out {
		g.Expect(o).NotTo(ContainSubstring(planted))
		g.Expect(o).NotTo(ContainSubstring("BEGIN PRIVATE KEY"))
		g.Expect(o).NotTo(ContainSubstring(keyPEM[30:60]))
	}
	g.Expect(fmt.Sprintf("%v", s)).To(Equal(Mask))
	g.Expect(string(js)).To(ContainSubstring(`"S":"[REDACTED]"`))
	g.Expect(string(js)).To(ContainSubstring(`"clientsecret":"[REDACTED]"`), "credential names stay visible")
	g.Expect(logs.String()).To(ContainSubstring(Mask))
	// An empty secret prints as empty so that absence stays visible.
	g.Expect(Secret("").String()).To(Equal(""))
	var nilKey *PrivateKey
	g.Expect(nilKey.String()).To(Equal("<nil>"))
	g.Expect(nilKey.Signer()).To(BeNil())
}

func TestCredentialsGet(t *testing.T) {
	g := NewWithT(t)
	c := NewCredentials(map[string]any{"s": "text", "n": json.Number("42"), "o": map[string]any{"a": true}, "z": nil})
	v, ok := c.Get("s")
	g.Expect(ok).To(BeTrue())
	g.Expect(v.Reveal()).To(Equal("text"))
	v, _ = c.Get("n")
	g.Expect(v.Reveal()).To(Equal("42"))
	v, _ = c.Get("o")
	g.Expect(v.Reveal()).To(Equal(`{"a":true}`))
	_, ok = c.Get("z")
	g.Expect(ok).To(BeFalse())
	_, ok = c.Get("absent")
	g.Expect(ok).To(BeFalse())
	g.Expect(c.Keys()).To(Equal([]string{"n", "o", "s", "z"}))
}
