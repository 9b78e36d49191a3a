package connector_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
)

func attrs(kv ...string) connector.Subject {
	var s connector.Subject
	for i := 0; i < len(kv); i += 2 {
		s = append(s, connector.RDN{{Type: kv[i], Value: kv[i+1]}})
	}
	return s
}

func TestParseSubject(t *testing.T) {
	cases := []struct {
		in   string
		want connector.Subject
	}{
		{"O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app", attrs("O", "Org", "OU", "OrgUnit", "L", "Waldorf", "ST", "Waldorf", "C", "DE", "CN", "app")},
		{"CN=app,O=Org", attrs("CN", "app", "O", "Org")},
		{" cn = app , o = My Org ", attrs("CN", "app", "O", "My Org")},
		{`O=Acme\, Inc.,CN=app`, attrs("O", "Acme, Inc.", "CN", "app")},
		{`O=Acme\2C Inc.,CN=a\+b`, attrs("O", "Acme, Inc.", "CN", "a+b")},
		{`O="Acme, Inc.",CN=app`, attrs("O", "Acme, Inc.", "CN", "app")},
		{`O="say \"hi\"";CN=app`, attrs("O", `say "hi"`, "CN", "app")},
		{`CN=\ lead and trail\ `, attrs("CN", " lead and trail ")},
		{`CN=caf\C3\A9`, attrs("CN", "café")},
		{"CN=café", attrs("CN", "café")},
		{"S=BW,E=a@b.c,2.5.4.3=x", attrs("ST", "BW", "EMAILADDRESS", "a@b.c", "2.5.4.3", "x")},
		{"OU=a+CN=b,O=c", connector.Subject{{{Type: "OU", Value: "a"}, {Type: "CN", Value: "b"}}, {{Type: "O", Value: "c"}}}},
		{"OU=one,OU=two,CN=x", attrs("OU", "one", "OU", "two", "CN", "x")},
		{"CN=a=b", attrs("CN", "a=b")},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			g := NewWithT(t)
			s, err := connector.ParseSubject(tc.in)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s).To(Equal(tc.want))
			again, err := connector.ParseSubject(s.String())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).To(Equal(s))
		})
	}
}

func TestParseSubjectErrors(t *testing.T) {
	cases := map[string]string{
		"":               "empty",
		"   ":            "empty",
		"CN":             `missing "="`,
		"CN=app,":        `missing "="`,
		"=app":           "empty attribute type",
		"XX=app":         `unknown attribute type "XX"`,
		"CN=":            "CN: empty value",
		"CN=a,O=":        "O: empty value",
		`CN=a\`:          "dangling backslash",
		`CN=a\4`:         "bad hex escape",
		`CN="open`:       "unterminated quoted value",
		`CN="a"b`:        "text after a quoted value",
		`CN=a"b`:         `unescaped '"'`,
		`CN=#0403`:       "hex-encoded",
		"CN=\xff":        "not valid UTF-8",
		`CN=\FF`:         "not valid UTF-8",
		"1.2=x":          "", // a valid OID: no error (checked below)
		"3.1=x":          `unknown attribute type "3.1"`,
		"CN=a;;O=b":      `missing "="`,
		"O=Org, CN = a+": `missing "="`,
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			g := NewWithT(t)
			_, err := connector.ParseSubject(in)
			if want == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(connector.ErrInvalidInput))
			g.Expect(err.Error()).To(ContainSubstring(want))
		})
	}
}

func TestSubjectEscapingRoundTrips(t *testing.T) {
	g := NewWithT(t)
	s := attrs("CN", ` #a,b+c"d\e<f>g;h=i `, "O", "#x", "OU", "tab\there")
	out := s.String()
	g.Expect(out).To(Equal(`CN=\ #a\,b\+c\"d\\e\<f\>g\;h\=i\ ,O=\#x,OU=tab\09here`))
	back, err := connector.ParseSubject(out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(back).To(Equal(s))
}

func TestCSRCarriesTheSubjectInOrder(t *testing.T) {
	g := NewWithT(t)
	s, err := connector.ParseSubject("O=Org,OU=Unit,L=Town,ST=State,C=DE,CN=app")
	g.Expect(err).NotTo(HaveOccurred())
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrPEM, err := connector.NewCSR(s, key)
	g.Expect(err).NotTo(HaveOccurred())
	b, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(csr.CheckSignature()).To(Succeed())
	der, err := s.DER()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(csr.RawSubject).To(Equal(der))
	g.Expect(s.Matches(csr.RawSubject)).To(BeTrue())
	// Go's own order (C, ST, L, O, OU, CN) differs but carries the same attributes.
	g.Expect(csr.Subject.String()).To(Equal("CN=app,OU=Unit,O=Org,L=Town,ST=State,C=DE"))
	n := s.Name()
	g.Expect(n.CommonName).To(Equal("app"))
	g.Expect(n.Organization).To(Equal([]string{"Org"}))

	other, _ := connector.ParseSubject("O=Org,OU=Unit,L=Town,ST=State,C=DE,CN=other")
	g.Expect(other.Matches(csr.RawSubject)).To(BeFalse())
	g.Expect(s.Matches([]byte("junk"))).To(BeFalse())
}

func FuzzParseSubject(f *testing.F) {
	for _, seed := range []string{
		"O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app",
		`O=Acme\, Inc.,CN=a\2Bb`, `O="Acme, Inc.";CN=app`, "OU=a+CN=b", `CN=\ x\ `,
		"2.5.4.3=x", "CN=", `CN="`, `CN=\`, "CN=caf\xc3\xa9",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := connector.ParseSubject(in)
		if err != nil {
			return
		}
		out := s.String()
		back, err := connector.ParseSubject(out)
		if err != nil {
			t.Fatalf("String() of a parsed subject does not parse: %q -> %q: %v", in, out, err)
		}
		if back.String() != out {
			t.Fatalf("round trip changed the subject: %q -> %q -> %q", in, out, back.String())
		}
		if der, err := s.DER(); err == nil && !s.Matches(der) {
			t.Fatalf("a subject does not match its own encoding: %q", in)
		}
	})
}

func BenchmarkParseSubject(b *testing.B) {
	for b.Loop() {
		if _, err := connector.ParseSubject(`O=Acme\, Inc.,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app`); err != nil {
			b.Fatal(err)
		}
	}
}
