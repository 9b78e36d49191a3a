package certwatch_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
)

var errCrash = errors.New("simulated crash")

func filesOf(ca *testpki.CA, leaf *testpki.Leaf) certwatch.Files {
	return certwatch.Files{CertPEM: leaf.CertPEM(), KeyPEM: leaf.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()}
}

func TestPersistWritesLoadableDir(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithCommonName("app1"))
	dir := filepath.Join(t.TempDir(), "pair")
	f := filesOf(ca, leaf)
	f.Extra = map[string][]byte{certwatch.ConnectionFile: []byte(`{"application":"app1"}`)}
	g.Expect(certwatch.Persist(context.Background(), dir, f)).To(Succeed())

	p, err := certwatch.LoadDir(context.Background(), dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().SerialNumber).To(Equal(leaf.Cert.SerialNumber))
	g.Expect(p.CAPool()).NotTo(BeNil())
	g.Expect(p.Verify(leaf.Cert.NotBefore.Add(1))).To(Succeed())

	fi, err := os.Stat(filepath.Join(dir, certwatch.KeyFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o600)))
	conn, err := os.ReadFile(filepath.Join(dir, certwatch.ConnectionFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(conn)).To(ContainSubstring("app1"))

	// A renewal persisted later keeps connection.json and ca.crt.
	next := ca.Issue(testpki.WithCommonName("app1"))
	g.Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: next.CertPEM(), KeyPEM: next.KeyPEM(testpki.SEC1)})).To(Succeed())
	p, err = certwatch.LoadDir(context.Background(), dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().SerialNumber).To(Equal(next.Cert.SerialNumber))
	g.Expect(p.CAPool()).NotTo(BeNil())
	conn, err = os.ReadFile(filepath.Join(dir, certwatch.ConnectionFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(conn)).To(ContainSubstring("app1"))
}

func TestWriteExtraKeepsThePair(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	leaf := ca.Issue()
	dir := t.TempDir()
	f := filesOf(ca, leaf)
	f.Extra = map[string][]byte{certwatch.ConnectionFile: []byte(`{"eventsUrl":"https://old"}`)}
	g.Expect(certwatch.Persist(context.Background(), dir, f)).To(Succeed())
	g.Expect(certwatch.WriteExtra(context.Background(), dir, map[string][]byte{certwatch.ConnectionFile: []byte(`{"eventsUrl":"https://new"}`)})).To(Succeed())
	b, err := os.ReadFile(filepath.Join(dir, certwatch.ConnectionFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(ContainSubstring("https://new"))
	p, err := certwatch.LoadDir(context.Background(), dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().SerialNumber).To(Equal(leaf.Cert.SerialNumber))
	fi, err := os.Stat(filepath.Join(dir, certwatch.KeyFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o600)), "the carried key keeps its mode")
	g.Expect(certwatch.WriteExtra(context.Background(), dir, map[string][]byte{certwatch.KeyFile: []byte("x")})).To(HaveOccurred())
}

func TestPersistRefusesMismatchedPair(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	a, b := ca.Issue(), ca.Issue()
	dir := t.TempDir()
	err := certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: a.CertPEM(), KeyPEM: b.KeyPEM(testpki.PKCS8)})
	g.Expect(err).To(MatchError(certwatch.ErrKeyMismatch))
	g.Expect(err.Error()).NotTo(ContainSubstring("PRIVATE KEY"))
	entries, _ := os.ReadDir(dir)
	g.Expect(entries).To(BeEmpty())

	err = certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: a.CertPEM(), KeyPEM: a.KeyPEM(testpki.PKCS8),
		Extra: map[string][]byte{certwatch.KeyFile: []byte("x")}})
	g.Expect(err).To(HaveOccurred())
}

// TestPersistCrashAtEveryStep stops Persist after each of its steps (the
// hook plays the crash), from every layout a directory can start in, and
// shows that LoadDir then finds a key that matches its certificate, the old
// pair or the new one, and that the next Persist ignores and removes what
// the crash left behind.
func TestPersistCrashAtEveryStep(t *testing.T) {
	ca := testpki.NewCA()
	old, next, after := ca.Issue(testpki.WithCommonName("old")), ca.Issue(testpki.WithCommonName("new")), ca.Issue(testpki.WithCommonName("after"))
	starts := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"empty dir", func(*testing.T, string) {}},
		{"persisted", func(t *testing.T, dir string) {
			if err := certwatch.Persist(context.Background(), dir, filesOf(ca, old)); err != nil {
				t.Fatal(err)
			}
		}},
		{"plain files", func(t *testing.T, dir string) {
			for name, data := range map[string][]byte{certwatch.CertFile: old.CertPEM(), certwatch.KeyFile: old.KeyPEM(testpki.PKCS8), certwatch.CAFile: ca.CertPEM()} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"kubernetes mount", func(t *testing.T, dir string) {
			err := testpki.WriteKubernetesDir(dir, map[string][]byte{certwatch.CertFile: old.CertPEM(), certwatch.KeyFile: old.KeyPEM(testpki.PKCS8), certwatch.CAFile: ca.CertPEM()})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, start := range starts {
		var steps []string
		probe := t.TempDir()
		start.setup(t, probe)
		if err := certwatch.Persist(context.Background(), probe, filesOf(ca, next), certwatch.WithPersistHook(func(s string) error {
			steps = append(steps, s)
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		if len(steps) < 8 {
			t.Fatalf("%s: only %d steps seen: %v", start.name, len(steps), steps)
		}
		for i, step := range steps {
			t.Run(fmt.Sprintf("%s/crash after %02d %s", start.name, i, step), func(t *testing.T) {
				g := NewWithT(t)
				dir := t.TempDir()
				start.setup(t, dir)
				n := 0
				err := certwatch.Persist(context.Background(), dir, filesOf(ca, next), certwatch.WithPersistHook(func(string) error {
					if n == i {
						return errCrash
					}
					n++
					return nil
				}))
				g.Expect(err).To(MatchError(errCrash))

				p, err := certwatch.LoadDir(context.Background(), dir)
				if start.name == "empty dir" && errors.Is(err, certwatch.ErrNoPair) {
					return // nothing was live before the swap
				}
				g.Expect(err).NotTo(HaveOccurred())
				// ParsePEM already refuses a key that does not match; check
				// the leaf is one of the two whole pairs all the same.
				g.Expect(p.Leaf().Subject.CommonName).To(BeElementOf("old", "new"))
				// Within both pairs' validity: they were issued in
				// different seconds now and then.
				at := old.Cert.NotBefore
				if next.Cert.NotBefore.After(at) {
					at = next.Cert.NotBefore
				}
				g.Expect(p.Verify(at.Add(1))).To(Succeed())

				g.Expect(certwatch.Persist(context.Background(), dir, filesOf(ca, after))).To(Succeed())
				p, err = certwatch.LoadDir(context.Background(), dir)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(p.Leaf().Subject.CommonName).To(Equal("after"))
				entries, err := os.ReadDir(dir)
				g.Expect(err).NotTo(HaveOccurred())
				dirs := 0
				for _, e := range entries {
					g.Expect(e.Name()).NotTo(ContainSubstring("_tmp_"))
					if e.IsDir() {
						dirs++
					}
				}
				g.Expect(dirs).To(Equal(1), "one generation left")
			})
		}
	}
}
