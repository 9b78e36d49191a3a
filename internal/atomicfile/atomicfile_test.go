package atomicfile_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/atomicfile"
)

var errCrash = errors.New("simulated crash")

func set(gen string) []atomicfile.File {
	return []atomicfile.File{
		{Name: "tls.crt", Data: []byte("crt " + gen)},
		{Name: "tls.key", Data: []byte("key " + gen), Mode: 0o600},
		{Name: "ca.crt", Data: []byte("ca " + gen)},
	}
}

// readSet reads the named files the way certwatch does: the top-level names
// first, and the ..data generation when they disagree. It returns the one
// generation all files belong to, or an error.
func readSet(dir string, names ...string) (string, error) {
	g, _, err := readSetFallback(dir, names...)
	return g, err
}

// readSetFallback is readSet that also says whether it had to use ..data.
func readSetFallback(dir string, names ...string) (string, bool, error) {
	read := func(base string) (string, error) {
		gen := ""
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(base, n))
			if err != nil {
				return "", err
			}
			_, g, _ := strings.Cut(string(b), " ")
			if gen != "" && g != gen {
				return "", fmt.Errorf("mixed generations %q and %q", gen, g)
			}
			gen = g
		}
		return gen, nil
	}
	g, err := read(dir)
	if err == nil {
		return g, false, nil
	}
	if d := atomicfile.DataDir(dir); d != "" {
		g, err := read(d)
		return g, true, err
	}
	return "", false, err
}

func TestWriteDirLayoutAndModes(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "certs")
	g.Expect(atomicfile.WriteDir(context.Background(), dir, set("1"))).To(Succeed())

	g.Expect(atomicfile.DataDir(dir)).To(Equal(filepath.Join(dir, "..data")))
	for _, n := range []string{"tls.crt", "tls.key", "ca.crt"} {
		target, err := os.Readlink(filepath.Join(dir, n))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(target).To(Equal(filepath.Join("..data", n)))
	}
	fi, err := os.Stat(filepath.Join(dir, "tls.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o600)))
	fi, err = os.Stat(filepath.Join(dir, "tls.crt"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o644)))

	// A second write replaces the set, carries connection.json over and
	// leaves exactly one generation behind.
	keep := atomicfile.WithKeep("tls.crt", "tls.key", "ca.crt", "connection.json")
	g.Expect(atomicfile.WriteDir(context.Background(), dir, []atomicfile.File{{Name: "connection.json", Data: []byte("conn 1")}}, keep)).To(Succeed())
	g.Expect(atomicfile.WriteDir(context.Background(), dir, set("2"), keep)).To(Succeed())
	g.Expect(readSet(dir, "tls.crt", "tls.key", "ca.crt")).To(Equal("2"))
	b, err := os.ReadFile(filepath.Join(dir, "connection.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("conn 1"))
	entries, err := os.ReadDir(dir)
	g.Expect(err).NotTo(HaveOccurred())
	gens := 0
	for _, e := range entries {
		if e.IsDir() {
			gens++
		}
	}
	g.Expect(gens).To(Equal(1))
}

func TestWriteDirRejectsBadNames(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	for _, name := range []string{"", "a/b", "..data", "..x", "."} {
		err := atomicfile.WriteDir(context.Background(), dir, []atomicfile.File{{Name: name}})
		g.Expect(err).To(MatchError(atomicfile.ErrBadName), name)
	}
	err := atomicfile.WriteDir(context.Background(), dir, []atomicfile.File{{Name: "a"}, {Name: "a"}})
	g.Expect(err).To(MatchError(atomicfile.ErrBadName))
}

func TestWriteDirCanceled(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Expect(atomicfile.WriteDir(ctx, t.TempDir(), set("1"))).To(MatchError(context.Canceled))
}

// TestWriteDirCrashAtEveryStep stops WriteDir after every step, from three
// starting points (no files, a WriteDir layout, plain files), and checks that
// the files on disk are always one whole generation, old or new, and that
// the next WriteDir succeeds and ignores what the crash left behind.
func TestWriteDirCrashAtEveryStep(t *testing.T) {
	starts := map[string]func(t *testing.T, dir string){
		"empty": func(t *testing.T, dir string) {},
		"generation": func(t *testing.T, dir string) {
			if err := atomicfile.WriteDir(context.Background(), dir, set("old")); err != nil {
				t.Fatal(err)
			}
		},
		"plain files": func(t *testing.T, dir string) {
			for _, f := range set("old") {
				if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
	for startName, start := range starts {
		// Count the steps of a full run from this start.
		probe := t.TempDir()
		start(t, probe)
		var steps []string
		err := atomicfile.WriteDir(context.Background(), probe, set("new"), atomicfile.WithHook(func(s atomicfile.Step, name string) error {
			steps = append(steps, string(s)+" "+name)
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		fellBack := 0
		for i, stepName := range steps {
			t.Run(fmt.Sprintf("%s/%02d %s", startName, i, stepName), func(t *testing.T) {
				g := NewWithT(t)
				dir := t.TempDir()
				start(t, dir)
				n := 0
				err := atomicfile.WriteDir(context.Background(), dir, set("new"), atomicfile.WithHook(func(atomicfile.Step, string) error {
					if n == i {
						return errCrash
					}
					n++
					return nil
				}))
				g.Expect(err).To(MatchError(errCrash))
				gen, fb, err := readSetFallback(dir, "tls.crt", "tls.key", "ca.crt")
				if fb {
					fellBack++
				}
				if startName == "empty" && err != nil {
					g.Expect(err).To(MatchError(fs.ErrNotExist)) // nothing was live yet
				} else {
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(gen).To(BeElementOf("old", "new"))
				}
				// The writer after the crash wins and cleans up.
				g.Expect(atomicfile.WriteDir(context.Background(), dir, set("next"))).To(Succeed())
				g.Expect(readSet(dir, "tls.crt", "tls.key", "ca.crt")).To(Equal("next"))
				entries, err := os.ReadDir(dir)
				g.Expect(err).NotTo(HaveOccurred())
				for _, e := range entries {
					g.Expect(e.Name()).NotTo(ContainSubstring("_tmp_"))
				}
			})
		}
		// Converting plain files name by name is the one case where the
		// top-level names disagree after a crash; ..data resolves it.
		if startName == "plain files" && fellBack == 0 {
			t.Errorf("no crash point needed the ..data fallback; the test does not cover the conversion")
		}
	}
}

func TestWriteFile(t *testing.T) {
	g := NewWithT(t)
	p := filepath.Join(t.TempDir(), "connection.json")
	g.Expect(atomicfile.WriteFile(context.Background(), p, []byte("one"), 0o600)).To(Succeed())
	g.Expect(atomicfile.WriteFile(context.Background(), p, []byte("two"), 0o600)).To(Succeed())
	b, err := os.ReadFile(p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("two"))
	fi, err := os.Stat(p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o600)))
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp-*"))
	g.Expect(left).To(BeEmpty())
}
