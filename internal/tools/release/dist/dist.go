// Package dist makes credbroker's release artefacts: one tar.gz per platform
// with the static binary and the README, a CycloneDX SBOM per platform made by
// cyclonedx-gomod from the module graph, and SHA256SUMS over all of them.
// Everything is a function of the source tree: the same commit gives the same
// bytes (file times are the commit time, owners are 0, entries are sorted, the
// binaries are built with -trimpath and without cgo).
package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

// Sums is the name of the checksum file.
const Sums = "SHA256SUMS"

// Options say what to make.
type Options struct {
	Root    string           // the main module's directory
	Out     string           // where the artefacts go (created)
	Targets []release.Target // platforms
	SBOM    bool             // also write a CycloneDX SBOM per platform
	Stamp   stamp.Stamp
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._+-]`)

// Base is the archive's name without .tar.gz, and the directory inside it.
func Base(v string, t release.Target) string {
	return "credbroker_" + unsafeName.ReplaceAllString(v, "_") + "_" + t.OS + "_" + t.Arch
}

// Run makes the artefacts and returns their names (relative to o.Out),
// SHA256SUMS last.
func Run(o Options) ([]string, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	readme, err := os.ReadFile(filepath.Join(o.Root, "README.md"))
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "credbroker-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var names []string
	for _, t := range o.Targets {
		base := Base(o.Stamp.Version, t)
		bin := filepath.Join(tmp, base, "credbroker")
		if err := release.Build(o.Root, t, o.Stamp, bin); err != nil {
			return nil, err
		}
		binData, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		archive, err := TarGz(o.Stamp, []File{
			{Name: base + "/credbroker", Mode: 0o755, Data: binData},
			{Name: base + "/README.md", Mode: 0o644, Data: readme},
		})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(o.Out, base+".tar.gz"), archive, 0o644); err != nil {
			return nil, err
		}
		names = append(names, base+".tar.gz")
		if o.SBOM {
			name := base + ".cdx.json"
			if err := SBOM(o.Root, o.Stamp, bin, filepath.Join(o.Out, name)); err != nil {
				return nil, err
			}
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var sums bytes.Buffer
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(o.Out, n))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	if err := os.WriteFile(filepath.Join(o.Out, Sums), sums.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return append(names, Sums), nil
}

// File is one entry of an archive.
type File struct {
	Name string
	Mode int64
	Data []byte
}

// TarGz packs files in the given order, with the stamp's commit time as every
// time stamp (the tar entries' and the gzip header's) and root as the owner.
func TarGz(s stamp.Stamp, files []File) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = s.ModTime()
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, f := range files {
		if d := filepath.Dir(f.Name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: s.ModTime(), Format: tar.FormatUSTAR}); err != nil {
				return nil, err
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: s.ModTime(), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SBOM writes the CycloneDX SBOM of the credbroker binary bin: its main
// module and every module linked into it, as the Go toolchain recorded them
// from the module graph (cyclonedx-gomod's bin mode, pinned by this module's
// go.mod as a tool). The version is the stamp's (Go records none in a worktree
// or tarball build); there is no timestamp and no random serial number, so the
// SBOM is reproducible too. It then checks that the result is a CycloneDX
// document that names credbroker and its dependencies.
func SBOM(root string, s stamp.Stamp, bin, out string) error {
	cmd := exec.Command("go", "tool", "cyclonedx-gomod", "bin", "-json", "-noserial", "-notimestamp",
		"-version", s.Version, "-output", out, bin)
	cmd.Dir = filepath.Join(root, "internal", "tools", "release")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cyclonedx-gomod for %s: %v\n%s", filepath.Base(out), err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	return CheckSBOM(data)
}

// CheckSBOM checks that data is a CycloneDX JSON document about credbroker
// that lists at least one dependency.
func CheckSBOM(data []byte) error {
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		return fmt.Errorf("sbom: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || !strings.HasPrefix(bom.Metadata.Component.Name, stamp.Module) || len(bom.Components) == 0 {
		return fmt.Errorf("sbom: not a CycloneDX SBOM of %s with its dependencies (format %q, component %q, %d components)",
			stamp.Module, bom.BOMFormat, bom.Metadata.Component.Name, len(bom.Components))
	}
	return nil
}
