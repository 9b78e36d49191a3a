package sidecar

import (
	"errors"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestJudgeCertificate(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	valid := CertificateState{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	cases := []struct {
		name   string
		loaded bool
		st     CertificateState
		ok     bool
		want   string
	}{
		{"valid", true, valid, true, ""},
		{"not loaded", false, CertificateState{}, false, "not loaded yet"},
		{"not loaded with error", false, CertificateState{LastError: "pairing refused: token used"}, false, "pairing refused"},
		{"expired", true, CertificateState{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Second)}, false, "expired at 2026-11-23T11:59:59Z; a new one-time token is needed"},
		{"expires exactly now", true, CertificateState{NotAfter: now}, false, "expired"},
		{"revoked", true, CertificateState{NotBefore: valid.NotBefore, NotAfter: valid.NotAfter, NeedsToken: true, LastError: "revoked"}, true, "stays in use until it expires at 2026-11-23T13:00:00Z; a new one-time token is needed (revoked)"},
		{"not yet valid", true, CertificateState{NotBefore: now.Add(time.Minute), NotAfter: now.Add(time.Hour)}, false, "not valid before"},
		{"renewal failing but valid", true, CertificateState{NotBefore: valid.NotBefore, NotAfter: valid.NotAfter, LastError: "connector down"}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ok, why := judgeCertificate("connector", tc.loaded, tc.st, now)
			g.Expect(ok).To(Equal(tc.ok))
			if tc.want == "" {
				g.Expect(why).To(BeEmpty())
			} else {
				g.Expect(why).To(HavePrefix(`certificate "connector"`))
				g.Expect(why).To(ContainSubstring(tc.want))
			}
		})
	}
}

func TestJudgeBindingAndToken(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ok, why := judgeBinding("b", BindingInfo{Auth: true}, true)
	g.Expect(ok).To(BeTrue())
	g.Expect(why).To(BeEmpty())
	ok, why = judgeBinding("b", BindingInfo{}, false)
	g.Expect(ok).To(BeFalse())
	g.Expect(why).To(Equal(`binding "b": not found`))
	ok, why = judgeBinding("b", BindingInfo{Problems: []string{`credential-type x509 but no "key"`}}, true)
	g.Expect(ok).To(BeFalse())
	g.Expect(why).To(ContainSubstring(`unusable: credential-type x509 but no "key"`))

	ok, _ = judgeToken("b", Token{AccessToken: "t", ExpiresAt: now.Add(time.Minute)}, nil, now)
	g.Expect(ok).To(BeTrue())
	ok, why = judgeToken("b", Token{}, errors.New("auth server down"), now)
	g.Expect(ok).To(BeFalse())
	g.Expect(why).To(Equal(`binding "b": no valid token: auth server down`))
	ok, _ = judgeToken("b", Token{AccessToken: "t", ExpiresAt: now}, nil, now)
	g.Expect(ok).To(BeFalse())
	ok, _ = judgeToken("b", Token{}, nil, now)
	g.Expect(ok).To(BeFalse())
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/v1", "https://api.example.com/v1"},
		{"https://api.example.com/v1?apikey=s3cret&x=1", "https://api.example.com/v1?redacted"},
		{"https://user:pa55@api.example.com/v1?", "https://api.example.com/v1"},
		{"http://127.0.0.1:8080/?k=v#frag", "http://127.0.0.1:8080/?redacted"},
	} {
		g := NewWithT(t)
		u, err := url.Parse(tc.in)
		g.Expect(err).NotTo(HaveOccurred())
		got := redactURL(u)
		g.Expect(got).To(Equal(tc.want), tc.in)
		g.Expect(got).NotTo(ContainSubstring("s3cret"))
		g.Expect(got).NotTo(ContainSubstring("pa55"))
	}
}
