package atomicfile_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/atomicfile"
)

var layoutKeep = atomicfile.WithKeep("tls.crt", "tls.key", "ca.crt", "connection.json")

// WriteDir creates what it writes into itself, 0700: dir when missing and
// every generation.
func TestWriteDirCreatesPrivateDirectories(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "a", "certs")
	g.Expect(atomicfile.WriteDir(context.Background(), dir, set("1"))).To(Succeed())
	fi, err := os.Stat(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(fs.FileMode(0o700)))
	gen, err := os.Stat(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(gen.Mode().Perm()).To(Equal(fs.FileMode(0o700)), "the generation is private")
	info, err := atomicfile.Inspect(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Loose).To(BeFalse())
}

// A shared directory (an emptyDir is 0777) is used, reported as loose.
func TestInspectReportsALooseDirectory(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(os.Chmod(dir, 0o777)).To(Succeed())
	info, err := atomicfile.Inspect(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Loose).To(BeTrue())
	g.Expect(atomicfile.WriteDir(context.Background(), dir, set("1"))).To(Succeed())
	g.Expect(readSet(dir, "tls.crt", "tls.key", "ca.crt")).To(Equal("1"))
	missing, err := atomicfile.Inspect(filepath.Join(dir, "nope"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(missing.Exists).To(BeFalse())
}

// A planted "..data" that leads outside the directory (or to a link inside
// it) is never followed: nothing of its target is read or copied.
func TestWriteDirRefusesAPlantedDataLink(t *testing.T) {
	elsewhere := t.TempDir()
	for _, tc := range []struct {
		name  string
		plant func(dir string) error
	}{
		{"absolute", func(dir string) error { return os.Symlink(elsewhere, filepath.Join(dir, "..data")) }},
		{"relative upwards", func(dir string) error {
			rel, _ := filepath.Rel(dir, elsewhere)
			return os.Symlink(rel, filepath.Join(dir, "..data"))
		}},
		{"to a link inside the directory", func(dir string) error {
			if err := os.Symlink(elsewhere, filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
				return err
			}
			return os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data"))
		}},
		{"to a name without the generation prefix", func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "gen"), 0o700); err != nil {
				return err
			}
			return os.Symlink("gen", filepath.Join(dir, "..data"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(os.WriteFile(filepath.Join(elsewhere, "secret"), []byte("PLANTED-SECRET"), 0o600)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(elsewhere, "connection.json"), []byte("theirs"), 0o644)).To(Succeed())
			dir := t.TempDir()
			g.Expect(tc.plant(dir)).To(Succeed())
			_, err := atomicfile.Inspect(dir)
			g.Expect(errors.Is(err, atomicfile.ErrUnsafeLayout)).To(BeTrue(), "%v", err)
			g.Expect(atomicfile.DataDir(dir)).To(BeEmpty(), "readers do not follow it either")
			err = atomicfile.WriteDir(context.Background(), dir, set("1"), layoutKeep)
			g.Expect(errors.Is(err, atomicfile.ErrUnsafeLayout)).To(BeTrue(), "%v", err)
			found := false
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Name() == "secret" {
					found = true
				}
				return nil
			})
			g.Expect(found).To(BeFalse(), "nothing was copied")
		})
	}
}

// Only the files WithKeep names move to the next generation; a file planted
// in the live generation is dropped, and a kept name that is a link is not
// followed.
func TestWriteDirCarriesOnlyNamedRegularFiles(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(atomicfile.WriteDir(context.Background(), dir, append(set("1"), atomicfile.File{Name: "connection.json", Data: []byte("conn")}), layoutKeep)).To(Succeed())
	live := filepath.Join(dir, "..data")
	g.Expect(os.WriteFile(filepath.Join(live, "extra"), []byte("planted"), 0o600)).To(Succeed())
	outside := filepath.Join(t.TempDir(), "secret")
	g.Expect(os.WriteFile(outside, []byte("PLANTED-SECRET"), 0o600)).To(Succeed())
	g.Expect(os.Remove(filepath.Join(live, "ca.crt"))).To(Succeed())
	g.Expect(os.Symlink(outside, filepath.Join(live, "ca.crt"))).To(Succeed())

	g.Expect(atomicfile.WriteDir(context.Background(), dir, []atomicfile.File{{Name: "tls.key", Data: []byte("k2"), Mode: 0o600}, {Name: "tls.crt", Data: []byte("c2")}}, layoutKeep)).To(Succeed())
	_, err := os.Stat(filepath.Join(live, "extra"))
	g.Expect(errors.Is(err, fs.ErrNotExist)).To(BeTrue(), "an unnamed file is not carried")
	_, err = os.Lstat(filepath.Join(live, "ca.crt"))
	g.Expect(errors.Is(err, fs.ErrNotExist)).To(BeTrue(), "a link is not carried")
	b, err := os.ReadFile(filepath.Join(dir, "connection.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("conn"))
}
