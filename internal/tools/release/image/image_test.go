package image_test

import (
	"archive/tar"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/image"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

// wantFiles is everything in the image: no shell, no libc, no package manager.
var wantFiles = []string{
	"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
	"home/", "home/nonroot/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/credbroker",
}

// TestImage builds the image as make image does (both linux platforms, from
// this source tree), writes and re-opens the OCI layout, and checks each
// image's user, entrypoint, labels and files, that the binary of this
// machine's platform says the stamped version, and that building twice gives
// the same index digest. Then it pushes the index to an in-process registry
// and pulls it back.
func TestImage(t *testing.T) {
	root, s, err := stamp.Here(".")
	if err != nil {
		t.Fatal(err)
	}
	platforms := []release.Target{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}
	opts := image.Options{Root: root, Stamp: s, Platforms: platforms}
	idx, err := image.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	tag := image.Tag(s.Version)
	if err := image.WriteLayout(dir, idx, tag); err != nil {
		t.Fatal(err)
	}

	// Re-open what was written, as a user of the layout would.
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 1 || topManifest.Manifests[0].Annotations[image.RefName] != tag {
		t.Fatalf("index.json: %+v, want one index named %q", topManifest.Manifests, tag)
	}
	written, err := top.ImageIndex(topManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := written.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	var got []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", got)
	}

	for _, d := range im.Manifests {
		img, err := written.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		p := release.Target{OS: d.Platform.OS, Arch: d.Platform.Architecture}
		t.Run(p.String(), func(t *testing.T) { checkImage(t, img, p, s) })
	}

	// Reproducible: the same tree gives the same index.
	again, err := image.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same tree: index %s and %s", d1, d2)
	}

	// The OCI archive holds the layout.
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := image.WriteArchive(dir, archive, s.ModTime()); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, archive)
	for _, n := range []string{"oci-layout", "index.json", "blobs/sha256/" + d1.Hex} {
		if !names[n] {
			t.Errorf("the OCI archive lacks %s", n)
		}
	}

	// Push to a registry and pull back: the closest this machine comes to
	// installing from one.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	u, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := image.Push(u.Host+"/credbroker/credbroker:"+tag, written)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if pd, _ := pulled.Digest(); pd != d1 {
		t.Errorf("pulled index %s, pushed %s", pd, d1)
	}
	// What a node of this machine's architecture would run.
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		arch = "amd64"
	}
	img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, release.Target{OS: "linux", Arch: arch}, s)
}

func checkImage(t *testing.T, img v1.Image, p release.Target, s stamp.Stamp) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != p.OS || cf.Architecture != p.Arch {
		t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, p)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (nonroot)", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/credbroker" || strings.Join(c.Cmd, " ") != "run" {
		t.Errorf("entrypoint %q cmd %q, want [/usr/local/bin/credbroker] [run]", c.Entrypoint, c.Cmd)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  s.Version,
		"org.opencontainers.image.revision": s.Commit,
		"org.opencontainers.image.title":    "credbroker",
		"org.opencontainers.image.source":   "https://github.com/credbroker/credbroker",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if !cf.Created.Time.Equal(s.ModTime()) {
		t.Errorf("created %v, want the commit time %v", cf.Created.Time, s.ModTime())
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []string
	contents := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, h.Name)
		base := filepath.Base(strings.TrimSuffix(h.Name, "/"))
		if base == "sh" || base == "bash" || base == "busybox" || base == "ash" || base == "dash" {
			t.Errorf("the image has a shell: %s", h.Name)
		}
		wantOwner := 0
		if h.Name == "home/nonroot/" {
			wantOwner = 65532
		}
		if h.Uid != wantOwner || h.Gid != wantOwner {
			t.Errorf("%s owned by %d:%d, want %d", h.Name, h.Uid, h.Gid, wantOwner)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		contents[h.Name] = data
	}
	sort.Strings(files)
	if strings.Join(files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files %v, want exactly %v", files, wantFiles)
	}
	if !strings.Contains(string(contents["etc/passwd"]), "\nnonroot:x:65532:65532:") || !strings.Contains(string(contents["etc/group"]), "\nnonroot:x:65532:") {
		t.Errorf("passwd %q group %q: want the nonroot user and group 65532", contents["etc/passwd"], contents["etc/group"])
	}
	if !strings.Contains(string(contents["etc/ssl/certs/ca-certificates.crt"]), "-----BEGIN CERTIFICATE-----") {
		t.Error("the CA bundle holds no certificate")
	}

	// The binary for this machine says the stamped version.
	if p.OS != runtime.GOOS || p.Arch != runtime.GOARCH {
		return
	}
	bin := filepath.Join(t.TempDir(), "credbroker")
	if err := os.WriteFile(bin, contents["usr/local/bin/credbroker"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("credbroker %s (commit %s, built %s, %s)\n", s.Version, s.Commit, s.Date(), runtime.Version())
	if string(out) != want {
		t.Errorf("the image's credbroker --version = %q, want %q", out, want)
	}
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}

func TestTag(t *testing.T) {
	for v, want := range map[string]string{
		"v0.1.0": "0.1.0",
		"v0.0.0-20261204211509-d6744d077f2e+dirty": "0.0.0-20261204211509-d6744d077f2e-dirty",
		"(devel)": "devel",
	} {
		if got := image.Tag(v); got != want {
			t.Errorf("Tag(%q) = %q, want %q", v, got, want)
		}
	}
}
