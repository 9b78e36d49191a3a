package dist_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/dist"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

// TestDistHostArchive runs the dist pipeline for this machine's platform only
// (make dist does all four), twice, and checks what a user downloads: the
// archive's entries, times and owners, the SBOM, the checksum file, that both
// runs gave the same bytes, and that the binary inside says the version,
// commit and commit time of this source tree.
func TestDistHostArchive(t *testing.T) {
	root, err := stamp.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	s, err := stamp.Of(root)
	if err != nil {
		t.Fatal(err)
	}
	host := release.Target{OS: runtime.GOOS, Arch: runtime.GOARCH}
	run := func() (string, []string) {
		out := t.TempDir()
		names, err := dist.Run(dist.Options{Root: root, Out: out, Targets: []release.Target{host}, SBOM: true, Stamp: s})
		if err != nil {
			t.Fatal(err)
		}
		return out, names
	}
	out1, names := run()
	out2, names2 := run()

	base := dist.Base(s.Version, host)
	want := []string{base + ".cdx.json", base + ".tar.gz", dist.Sums}
	if strings.Join(names, " ") != strings.Join(want, " ") || strings.Join(names2, " ") != strings.Join(want, " ") {
		t.Fatalf("artefacts %v and %v, want %v", names, names2, want)
	}
	for _, n := range names {
		a, err1 := os.ReadFile(filepath.Join(out1, n))
		b, err2 := os.ReadFile(filepath.Join(out2, n))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs on the same tree: not reproducible", n)
		}
	}

	// SHA256SUMS: one line per artefact, in the format sha256sum -c reads.
	sums, err := os.ReadFile(filepath.Join(out1, dist.Sums))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q: want <hex>  <name>", sc.Text())
		}
		data, err := os.ReadFile(filepath.Join(out1, name))
		if err != nil {
			t.Fatalf("SHA256SUMS names %s: %v", name, err)
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("SHA256SUMS: %s has %x, the file says %s", name, got, sum)
		}
		listed[name] = true
	}
	if len(listed) != 2 || !listed[base+".tar.gz"] || !listed[base+".cdx.json"] {
		t.Errorf("SHA256SUMS lists %v, want the archive and the SBOM", listed)
	}

	// The SBOM: CycloneDX, about this version of credbroker, with the
	// modules linked into the binary.
	sbom, err := os.ReadFile(filepath.Join(out1, base+".cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct{ Name, Version string }
		}
		Components []struct{ Name, Version string }
	}
	if err := json.Unmarshal(sbom, &bom); err != nil {
		t.Fatal(err)
	}
	deps := map[string]string{}
	for _, c := range bom.Components {
		deps[c.Name] = c.Version
	}
	if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Name != stamp.Module || bom.Metadata.Component.Version != s.Version ||
		deps["golang.org/x/oauth2"] == "" || deps["github.com/prometheus/client_golang"] == "" {
		t.Errorf("SBOM: format %q, component %s %s, components %v: want CycloneDX of %s %s with its dependencies",
			bom.BOMFormat, bom.Metadata.Component.Name, bom.Metadata.Component.Version, deps, stamp.Module, s.Version)
	}
	if _, ok := deps["github.com/onsi/ginkgo/v2"]; ok {
		t.Error("SBOM lists a test-only module: it should list what is linked into the binary")
	}

	// The archive: a directory with the binary and the README, commit time,
	// owned by root, nothing else.
	f, err := os.Open(filepath.Join(out1, base+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.Equal(s.ModTime()) {
		t.Errorf("gzip header time %v, want the commit time %v", zr.ModTime, s.ModTime())
	}
	tr := tar.NewReader(zr)
	var entries []string
	var bin []byte
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, fmt.Sprintf("%s %o", h.Name, h.Mode))
		if !h.ModTime.Equal(s.ModTime()) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %v owner %d:%d (%q:%q), want the commit time %v and 0:0", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, s.ModTime())
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case base + "/credbroker":
			bin = data
		case base + "/README.md":
			if !bytes.Equal(data, readme) {
				t.Error("the archive's README.md is not the repository's")
			}
		}
	}
	wantEntries := []string{base + "/ 755", base + "/credbroker 755", base + "/README.md 644"}
	if strings.Join(entries, ", ") != strings.Join(wantEntries, ", ") {
		t.Errorf("archive entries %v, want %v", entries, wantEntries)
	}

	// The binary: static, trimmed, and it says which build it is.
	path := filepath.Join(t.TempDir(), "credbroker")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, kv := range bi.Settings {
		settings[kv.Key] = kv.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings %v: want CGO_ENABLED=0 and -trimpath=true", settings)
	}
	// The test clock of the end-to-end suites (build tag
	// credbroker_testclock, docs/testing.md) is never in a release: no tag,
	// no package, not even the name of its variable (function names stay
	// in a stripped Go binary, so a linked package would show).
	if strings.Contains(settings["-tags"], "credbroker_testclock") {
		t.Errorf("make dist builds with -tags %q", settings["-tags"])
	}
	for _, trace := range []string{"internal/clock/testclock", "CREDBROKER_TESTCLOCK"} {
		if bytes.Contains(bin, []byte(trace)) {
			t.Errorf("the release binary contains %q: the test clock is linked in", trace)
		}
	}
	got, err := exec.Command(path, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	wantLine := fmt.Sprintf("credbroker %s (commit %s, built %s, %s)\n", s.Version, s.Commit, s.Date(), runtime.Version())
	if string(got) != wantLine {
		t.Errorf("credbroker version = %q, want %q", got, wantLine)
	}
	if s.Commit == "unknown" || s.Date() == "unknown" {
		t.Logf("no git here: the build says %q", got)
	}
}

func TestTarGzIsAFunctionOfItsInput(t *testing.T) {
	s := stamp.Stamp{Version: "v1.2.3", Commit: "abc"}
	files := []dist.File{{Name: "d/a", Mode: 0o644, Data: []byte("a")}}
	a, err := dist.TarGz(s, files)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dist.TarGz(s, files)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two archives of the same files differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() { // gzip writes the epoch as 0, "no time"
		t.Errorf("without a commit time the archive carries %v, want the Unix epoch", zr.ModTime)
	}
}

func TestCheckSBOM(t *testing.T) {
	good := `{"bomFormat":"CycloneDX","metadata":{"component":{"name":"github.com/credbroker/credbroker"}},"components":[{"name":"golang.org/x/oauth2"}]}`
	if err := dist.CheckSBOM([]byte(good)); err != nil {
		t.Errorf("a good SBOM: %v", err)
	}
	for _, bad := range []string{
		`{"bomFormat":"SPDX","metadata":{"component":{"name":"github.com/credbroker/credbroker"}},"components":[{"name":"x"}]}`,
		`{"bomFormat":"CycloneDX","metadata":{"component":{"name":"example.com/other"}},"components":[{"name":"x"}]}`,
		`{"bomFormat":"CycloneDX","metadata":{"component":{"name":"github.com/credbroker/credbroker"}},"components":[]}`,
		`not json`,
	} {
		if err := dist.CheckSBOM([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
