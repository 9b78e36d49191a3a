package vcap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestMalformedVCAP(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		offset   int64 // -1: no offset, -2: the input's length
		has      string
	}{
		{"empty", "  ", -1, "malformed input: empty"},
		{"truncated", `{"xsuaa":[{"name":"a","credentials":{"clientsecret":"` + plantedSecret, -2, "unexpected end of JSON input"},
		{"syntax error", `{"xsuaa": [}`, 12, "invalid character '}'"},
		{"top-level array", `[1,2]`, 1, "the top level is a JSON array"},
		{"trailing data", `{} {}`, 3, "data after the JSON value"},
		{"null", `null`, -1, "want a JSON object of service labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := ParseVCAP([]byte(tc.in), "file /etc/vcap.json")
			g.Expect(errors.Is(err, ErrMalformed)).To(BeTrue(), "%v", err)
			var ve *Error
			g.Expect(errors.As(err, &ve)).To(BeTrue())
			g.Expect(ve.Source).To(Equal("file /etc/vcap.json"))
			g.Expect(err.Error()).To(HavePrefix("vcap: file /etc/vcap.json"))
			g.Expect(err.Error()).To(ContainSubstring(tc.has))
			g.Expect(err.Error()).NotTo(ContainSubstring(plantedSecret))
			if tc.offset == -2 {
				tc.offset = int64(len(tc.in))
			}
			if tc.offset >= 0 {
				g.Expect(ve.HasOffset).To(BeTrue())
				g.Expect(ve.Offset).To(Equal(tc.offset))
				g.Expect(err.Error()).To(ContainSubstring("(byte "))
			}
		})
	}
}

func TestBindingLevelProblems(t *testing.T) {
	g := NewWithT(t)
	in := `{
	  "xsuaa": [
	    {"name": "no-creds", "plan": "application"},
	    {"name": "null-creds", "credentials": null},
	    {"name": "array-creds", "credentials": ["` + plantedSecret + `"]},
	    {"name": 42},
	    "not an object"
	  ],
	  "other": {"name": "x"}
	}`
	_, err := ParseVCAP([]byte(in), SourceVCAPServices)
	g.Expect(errors.Is(err, ErrMalformed)).To(BeTrue())
	g.Expect(err.Error()).To(Equal(`vcap: VCAP_SERVICES: field "other": malformed input: service "other": want an array of bindings`))

	in = strings.Replace(in, `"other": {"name": "x"}`, `"other": []`, 1)
	set, err := ParseVCAP([]byte(in), SourceVCAPServices)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(set.Len()).To(Equal(5))
	probs := map[string]string{}
	for _, b := range set.Bindings {
		g.Expect(b.Problems).To(HaveLen(1), b.Name)
		probs[b.Name] = b.Problems[0]
		g.Expect(b.Problems[0]).NotTo(ContainSubstring(plantedSecret))
	}
	g.Expect(probs).To(Equal(map[string]string{
		"no-creds":    `binding "no-creds": field "credentials": no credentials`,
		"null-creds":  `binding "null-creds": field "credentials": no credentials`,
		"array-creds": `binding "array-creds": field "credentials": malformed input: want a JSON object`,
		"xsuaa[3]":    `binding "xsuaa[3]": malformed input: "name" is a JSON number, want string`,
		"xsuaa[4]":    `binding "xsuaa[4]": malformed input: the top level is a JSON string, want struct`,
	}))
	g.Expect(errors.Is(set.Err(), ErrNoCredentials)).To(BeTrue())
	var me *MultiError
	g.Expect(errors.As(set.Err(), &me)).To(BeTrue())
	g.Expect(me.Errs).To(HaveLen(5))
}

func TestDuplicateNames(t *testing.T) {
	g := NewWithT(t)
	c := merge(baseXSUAACreds(), map[string]any{"clientsecret": plantedSecret})
	set := mustSet(t, vcapJSON(t, xsuaa("dup", c), identity("dup", merge(baseIASCreds(), map[string]any{"clientsecret": plantedSecret})), xsuaa("unique", c)))
	for _, b := range set.Bindings {
		if b.Name == "dup" {
			g.Expect(errors.Is(b.Err(), ErrDuplicateName)).To(BeTrue())
			g.Expect(b.Problems).To(ConsistOf(`binding "dup": field "name": duplicate binding name: 2 bindings are called "dup"`))
		} else {
			g.Expect(b.Problems).To(BeEmpty())
		}
	}
	_, err := set.ByName("dup")
	g.Expect(errors.Is(err, ErrAmbiguous)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("choose one by name"))
	_, err = set.ByName("absent")
	g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	g.Expect(err.Error()).To(Equal(`vcap: VCAP_SERVICES: no matching binding: name "absent"`))
}

func TestSelection(t *testing.T) {
	g := NewWithT(t)
	c := merge(baseXSUAACreds(), map[string]any{"clientsecret": plantedSecret})
	entry := func(name, plan string, tags ...string) map[string]any {
		e := xsuaa(name, c)
		e["plan"], e["tags"] = plan, tags
		return e
	}
	set := mustSet(t, vcapJSON(t,
		entry("dflt", "default"), entry("space", "space"), entry("broker", "broker", "special"),
		entry("lite", "lite"), entry("app", "APPLICATION"),
		identity("ias", merge(baseIASCreds(), map[string]any{"clientsecret": plantedSecret})),
		map[string]any{"label": "destination", "name": "dest", "credentials": map[string]any{"uri": "x"}},
	))
	for _, tc := range []struct{ drop, want string }{{"", "app"}, {"app", "broker"}, {"broker", "space"}, {"space", "dflt"}} {
		if tc.drop != "" {
			kept := set.Bindings[:0:0]
			for _, b := range set.Bindings {
				if b.Name != tc.drop {
					kept = append(kept, b)
				}
			}
			set = &Set{Source: set.Source, Bindings: kept}
		}
		b, err := set.Select("")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(b.Name).To(Equal(tc.want), "after dropping %q", tc.drop)
	}
	// Only the unknown plan is left among xsuaa: it is skipped, IAS is chosen.
	set = &Set{Source: set.Source, Bindings: []*Binding{mustBinding(set, "lite"), mustBinding(set, "ias"), mustBinding(set, "dest")}}
	b, err := set.Select("")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.Name).To(Equal("ias"))
	set = &Set{Source: set.Source, Bindings: []*Binding{mustBinding(set, "lite"), mustBinding(set, "dest")}}
	_, err = set.Select("")
	g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring(`lite has plan "lite"`))
	b, err = set.Select("dest")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.Label).To(Equal("destination"))
}

func mustBinding(s *Set, name string) *Binding {
	b, err := s.ByName(name)
	if err != nil {
		panic(err)
	}
	return b
}

func TestLoadPrecedence(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	doc := func(name string) []byte {
		return vcapJSON(t, xsuaa(name, merge(baseXSUAACreds(), map[string]any{"clientsecret": plantedSecret})))
	}
	fileA, fileB := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	g.Expect(os.WriteFile(fileA, doc("from-vcap-file"), 0o600)).To(Succeed())
	g.Expect(os.WriteFile(fileB, doc("from-file-path"), 0o600)).To(Succeed())
	root := filepath.Join(dir, "bindings")
	writeFiles(t, filepath.Join(root, "from-dir"), map[string]string{"type": "xsuaa", "clientid": "c", "clientsecret": plantedSecret, "url": "https://x"})

	all := Sources{VCAPFile: fileA, VCAPServices: string(doc("from-env")), VCAPServicesFilePath: fileB, BindingsDir: root}
	steps := []struct {
		src  Sources
		want string
	}{
		{all, "from-vcap-file"},
		{Sources{VCAPServices: all.VCAPServices, VCAPServicesFilePath: fileB, BindingsDir: root}, "from-env"},
		{Sources{VCAPServicesFilePath: fileB, BindingsDir: root}, "from-file-path"},
		{Sources{BindingsDir: root}, "from-dir"},
	}
	for _, s := range steps {
		set, err := Load(context.Background(), s.src)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(set.Len()).To(Equal(1), "sources are not merged")
		g.Expect(set.Bindings[0].Name).To(Equal(s.want))
		switch s.want {
		case "from-vcap-file":
			g.Expect(set.Bindings[0].Path).To(Equal(fileA))
		case "from-env":
			g.Expect(set.Bindings[0].Path).To(Equal(""))
		}
	}
	_, err := Load(context.Background(), Sources{})
	g.Expect(errors.Is(err, ErrNoBindings)).To(BeTrue())

	_, err = Load(context.Background(), Sources{VCAPFile: filepath.Join(dir, "missing.json")})
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("vcap: file " + filepath.Join(dir, "missing.json") + ": unreadable"))
}

func TestKeyFileOption(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	p := testPKI
	keyFile := filepath.Join(dir, "key.pem")
	g.Expect(os.WriteFile(keyFile, []byte(escaped(p.valid.KeyPEM(testpki.PKCS8))), 0o600)).To(Succeed())
	in := vcapJSON(t, xsuaa("self", merge(baseXSUAACreds(), map[string]any{"credential-type": "x509", "certificate": string(p.valid.CertPEM())})))
	b := only(t, mustSet(t, in, WithKeyFile(keyFile)))
	g.Expect(b.Problems).To(BeEmpty())
	g.Expect(b.Auth.Key.Source()).To(Equal("--key-file " + keyFile))

	_, err := ParseVCAP(in, SourceVCAPServices, WithKeyFile(filepath.Join(dir, "absent.pem")))
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring(`field "key": unreadable`))

	bad := filepath.Join(dir, "bad.pem")
	g.Expect(os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\n"+plantedSecret+"\n-----END PRIVATE KEY-----\n"), 0o600)).To(Succeed())
	b = only(t, mustSet(t, in, WithKeyFile(bad)))
	g.Expect(errors.Is(b.Err(), ErrBadKey)).To(BeTrue())
	g.Expect(b.Problems[0]).To(ContainSubstring("--key-file " + bad))
	g.Expect(b.Problems[0]).NotTo(ContainSubstring(plantedSecret))
}
