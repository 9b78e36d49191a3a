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

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func loadDirT(t *testing.T, root string, opts ...Option) *Set {
	t.Helper()
	s, err := LoadDir(context.Background(), root, append([]Option{WithClock(clock())}, opts...)...)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	return s
}

func TestServiceBindingIOLayout(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	p := testPKI
	writeFiles(t, filepath.Join(root, "my-xsuaa"), map[string]string{
		"type": "xsuaa\n", "provider": "sap\n", "plan": "application", "tags": "a, b",
		"clientid": "sb-app", "url": "https://p.authentication.localhost:8443\n",
		"credential-type": "x509", "certificate": string(p.valid.CertPEM()), "key": string(p.valid.KeyPEM(testpki.SEC1)),
		".hidden": "never read",
	})
	writeFiles(t, filepath.Join(root, "postgres"), map[string]string{"type": "postgresql", "host": "db", "password": plantedSecret})
	writeFiles(t, filepath.Join(root, ".skipped"), map[string]string{"type": "xsuaa"})
	writeFiles(t, root, map[string]string{"stray-file": "not a binding"})

	set := loadDirT(t, root)
	g.Expect(set.Source).To(Equal("dir " + root))
	g.Expect(set.Len()).To(Equal(2))
	x, err := set.ByName("my-xsuaa")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(x.Source).To(Equal("dir " + filepath.Join(root, "my-xsuaa")))
	g.Expect(x.Path).To(Equal(filepath.Join(root, "my-xsuaa")))
	g.Expect(x.Type).To(Equal("xsuaa"))
	g.Expect(x.Label).To(Equal("xsuaa"), "label defaults to type")
	g.Expect(x.Provider).To(Equal("sap"))
	g.Expect(x.Tags).To(Equal([]string{"a", "b"}))
	g.Expect(x.Credentials.Has(".hidden")).To(BeFalse())
	g.Expect(x.Credentials.Has("type")).To(BeFalse(), "metadata entries are not credentials")
	g.Expect(x.Problems).To(BeEmpty())
	g.Expect(x.Auth.Auth).To(Equal(AuthMTLS))
	g.Expect(x.Auth.TokenURL).To(Equal("https://p.authentication.cert.localhost:8443/oauth/token"))
	pg, _ := set.ByName("postgres")
	g.Expect(pg.Auth).To(BeNil())
	g.Expect(pg.Problems).To(BeEmpty())
	g.Expect(set.ByTag("B")).To(ConsistOf(x))
	g.Expect(set.ByLabel("postgresql")).To(ConsistOf(pg))
}

// TestKubernetesDataLayout reads bindings mounted the way the kubelet does
// (..data symlink to a timestamped directory, one symlink per key), and
// re-reads them after a rotation.
func TestKubernetesDataLayout(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	p := testPKI
	files := func(l *testpki.Leaf) map[string][]byte {
		return map[string][]byte{
			"type": []byte("identity"), "clientid": []byte("ias"), "url": []byte("https://t.accounts.localhost"),
			"credential-type": []byte("X509_GENERATED"), "certificate": l.CertPEM(), "key": l.KeyPEM(testpki.PKCS8),
		}
	}
	g.Expect(testpki.WriteKubernetesDir(filepath.Join(root, "ias"), files(p.valid))).To(Succeed())
	// A whole-root mount has its own ..data entries too: they are skipped.
	g.Expect(os.Symlink("ias", filepath.Join(root, "..data"))).To(Succeed())
	set := loadDirT(t, root)
	g.Expect(set.Len()).To(Equal(1))
	b := set.Bindings[0]
	g.Expect(b.Problems).To(BeEmpty())
	g.Expect(b.Auth.Auth).To(Equal(AuthMTLS))
	g.Expect(b.Auth.TokenURL).To(Equal("https://t.accounts.localhost/oauth2/token"))
	g.Expect(b.Credentials.Keys()).NotTo(ContainElement(HavePrefix("..")))
	g.Expect(b.Auth.Leaf().Subject.CommonName).To(Equal("valid"))

	g.Expect(testpki.WriteKubernetesDir(filepath.Join(root, "ias"), files(p.other))).To(Succeed())
	b = loadDirT(t, root).Bindings[0]
	g.Expect(b.Problems).To(BeEmpty())
	g.Expect(b.Auth.Leaf().Subject.CommonName).To(Equal("other"), "the rotated certificate is read")
}

func TestServiceOperatorMetadataLayout(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	md := `{"metaDataProperties":[{"name":"type","sourceName":"label","format":"text"},{"name":"plan","format":"text"},{"name":"tags","format":"json"}],
	 "credentialProperties":[{"name":"clientid","format":"text"},{"name":"clientsecret","format":"text"},{"name":"url","format":"text"},{"name":"domains","format":"json"}]}`
	writeFiles(t, filepath.Join(root, "text"), map[string]string{
		".metadata": md, "label": "xsuaa\n", "plan": "broker", "tags": `["x"]`,
		"clientid": "cid", "clientsecret": plantedSecret, "url": "https://a.authentication.localhost", "domains": `["authentication.localhost"]`,
	})
	writeFiles(t, filepath.Join(root, "container"), map[string]string{
		".metadata":   `{"metaDataProperties":[{"name":"type","sourceName":"label","format":"text"}],"credentialProperties":[{"name":"credentials","sourceName":"creds.json","format":"json","container":true}]}`,
		"label":       "identity",
		"creds.json":  `{"clientid":"ias","clientsecret":"` + plantedSecret + `","url":"https://t.accounts.localhost"}`,
		"unlisted":    "not in .metadata: ignored",
		"certificate": "unlisted too",
	})
	writeFiles(t, filepath.Join(root, "bad-json"), map[string]string{
		".metadata": md, "label": "xsuaa", "plan": "p", "tags": `["x"`, "clientid": "c", "clientsecret": plantedSecret, "url": "u", "domains": `[]`,
	})
	writeFiles(t, filepath.Join(root, "missing-file"), map[string]string{
		".metadata": md, "label": "xsuaa", "plan": "p", "tags": `[]`, "clientid": "c", "url": "u", "domains": `[]`,
	})
	writeFiles(t, filepath.Join(root, "bad-metadata"), map[string]string{".metadata": `{"metaDataProperties": [`})
	writeFiles(t, filepath.Join(root, "escape"), map[string]string{".metadata": `{"credentialProperties":[{"name":"x","sourceName":"../../etc/passwd"}]}`})

	set := loadDirT(t, root)
	text, _ := set.ByName("text")
	g.Expect(text.Problems).To(BeEmpty())
	g.Expect(text.Label).To(Equal("xsuaa"))
	g.Expect(text.Plan).To(Equal("broker"))
	g.Expect(text.Tags).To(Equal([]string{"x"}))
	g.Expect(text.Auth.Auth).To(Equal(AuthSecret))
	g.Expect(text.Auth.Domains).To(Equal([]string{"authentication.localhost"}))

	c, _ := set.ByName("container")
	g.Expect(c.Problems).To(BeEmpty())
	g.Expect(c.Auth.Kind).To(Equal(KindIdentity))
	g.Expect(c.Auth.TokenURL).To(Equal("https://t.accounts.localhost/oauth2/token"))
	g.Expect(c.Credentials.Has("unlisted")).To(BeFalse())

	bad, _ := set.ByName("bad-json")
	g.Expect(bad.Problems).To(ConsistOf(And(ContainSubstring(`binding "bad-json": field "tags"`), ContainSubstring("(byte 4)"))))
	miss, _ := set.ByName("missing-file")
	g.Expect(errors.Is(miss.Err(), ErrUnreadable)).To(BeTrue())
	g.Expect(miss.Problems[0]).To(ContainSubstring(`field "clientsecret": unreadable`))
	bm, _ := set.ByName("bad-metadata")
	g.Expect(errors.Is(bm.Err(), ErrMalformed)).To(BeTrue())
	g.Expect(bm.Problems[0]).To(ContainSubstring(`field ".metadata"`))
	esc, _ := set.ByName("escape")
	g.Expect(esc.Problems[0]).To(ContainSubstring("outside the binding"))

	for _, b := range set.Bindings {
		g.Expect(strings.Join(b.Problems, " ")).NotTo(ContainSubstring(plantedSecret))
	}
}

func TestSingleJSONBlobLayout(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	p := testPKI
	// A BTP secretKey-style blob with the credentials nested, an empty
	// sibling, and a self-managed key mounted as "key" next to it.
	writeFiles(t, filepath.Join(root, "nested"), map[string]string{
		"binding.json": `{"type":"xsuaa","plan":"application","tags":["t"],"instance_name":"inst","credentials":{"clientid":"c","credential-type":"x509","url":"https://s.authentication.localhost","certificate":"` + escaped(p.valid.CertPEM()) + `"}}`,
		"empty":        "",
		"key":          string(p.valid.KeyPEM(testpki.PKCS8)),
	})
	writeFiles(t, filepath.Join(root, "flat"), map[string]string{
		"credentials": `{"label":"xsuaa","clientid":"c","clientsecret":"` + plantedSecret + `","url":"https://s.authentication.localhost"}`,
	})
	set := loadDirT(t, root)
	n, _ := set.ByName("nested")
	g.Expect(n.Problems).To(BeEmpty())
	g.Expect(n.Label).To(Equal("xsuaa"))
	g.Expect(n.InstanceName).To(Equal("inst"))
	g.Expect(n.Auth.Auth).To(Equal(AuthMTLS))
	g.Expect(n.Auth.Key.Source()).To(Equal("binding"))
	f, _ := set.ByName("flat")
	g.Expect(f.Problems).To(BeEmpty())
	g.Expect(f.Auth.Auth).To(Equal(AuthSecret))
	g.Expect(f.Credentials.Has("label")).To(BeFalse())
}

func TestLoadDirErrors(t *testing.T) {
	g := NewWithT(t)
	_, err := LoadDir(context.Background(), filepath.Join(t.TempDir(), "absent"))
	var ve *Error
	g.Expect(errors.As(err, &ve)).To(BeTrue())
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue())
	g.Expect(ve.Source).To(HavePrefix("dir "))
	g.Expect(err.Error()).To(MatchRegexp(`^vcap: dir .*/absent: unreadable: open: no such file or directory$`))

	root := t.TempDir()
	g.Expect(os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "dangling"))).To(Succeed())
	set := loadDirT(t, root)
	g.Expect(set.Len()).To(Equal(1))
	g.Expect(errors.Is(set.Bindings[0].Err(), ErrUnreadable)).To(BeTrue())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	writeFiles(t, filepath.Join(root, "b"), map[string]string{"type": "x", "k": "v"})
	_, err = LoadDir(ctx, root)
	g.Expect(err).To(MatchError(context.Canceled))
}
