// Package image builds credbroker's OCI image without a container engine and
// without a base image: one layer that holds the static binary, a CA bundle
// and passwd/group entries for the nonroot user (UID/GID 65532), with the
// entrypoint, user and OCI labels in the config — no shell, no package
// manager, nothing else. One image per linux platform, under one index.
//
// The CA bundle is the build machine's (/etc/ssl/certs/ca-certificates.crt,
// Debian's ca-certificates: Mozilla's roots), copied at build time, as
// distroless does; credbroker (Go) reads it from that path on Linux. Rebuild
// the image to pick up a newer bundle.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

// Paths and identities inside the image.
const (
	Binary     = "/usr/local/bin/credbroker"
	CABundle   = "/etc/ssl/certs/ca-certificates.crt"
	User       = "65532:65532"
	Home       = "/home/nonroot"
	Repository = "ghcr.io/credbroker/credbroker"
	// AdminPort is /healthz, /readyz and /metrics (the proxy listens on
	// loopback only and is not exposed).
	AdminPort = "9411/tcp"
)

// DefaultCABundle is where the build machine's CA bundle is read from.
const DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

// Options say what to build.
type Options struct {
	Root      string           // the main module's directory
	Stamp     stamp.Stamp      // version, commit and commit time
	Platforms []release.Target // linux only
	CABundle  string           // PEM file copied into the image (DefaultCABundle when empty)
}

// Tag is the image tag of a version: see stamp.Tag.
func Tag(version string) string { return stamp.Tag(version) }

// Labels are the OCI annotations of the image config.
func Labels(s stamp.Stamp) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "credbroker",
		"org.opencontainers.image.description": "Credential broker sidecar: service bindings in, working credentials out",
		"org.opencontainers.image.source":      "https://github.com/credbroker/credbroker",
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.revision":    s.Commit,
		"org.opencontainers.image.created":     s.ModTime().Format(time.RFC3339),
	}
}

// Build compiles credbroker for each platform and returns the index.
func Build(o Options) (v1.ImageIndex, error) {
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", o.CABundle)
	}
	tmp, err := os.MkdirTemp("", "credbroker-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		if p.OS != "linux" {
			return nil, fmt.Errorf("platform %s: the image is for linux only", p)
		}
		bin := filepath.Join(tmp, p.OS+"-"+p.Arch, "credbroker")
		if err := release.Build(o.Root, p, o.Stamp, bin); err != nil {
			return nil, err
		}
		binData, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		img, err := Image(o.Stamp, p, binData, ca)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return idx, nil
}

// Image is the image of one platform around the given binary and CA bundle.
func Image(s stamp.Stamp, p release.Target, bin, ca []byte) (v1.Image, error) {
	layerTar, err := rootFS(s.ModTime(), bin, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: s.ModTime()}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "credbroker internal/tools/release (make image)", Comment: "credbroker, CA bundle, passwd/group"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = created
	cf.Author = ""
	cf.Config = v1.Config{
		Entrypoint:   []string{Binary},
		Cmd:          []string{"run"},
		User:         User,
		WorkingDir:   Home,
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CABundle},
		Labels:       Labels(s),
		ExposedPorts: map[string]struct{}{AdminPort: {}},
	}
	return mutate.ConfigFile(img, cf)
}

// rootFS is the layer's tar: entries sorted, times at mt, owned by root except
// the nonroot user's home.
func rootFS(mt time.Time, bin, ca []byte) ([]byte, error) {
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte // nil: a directory
	}
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:" + Home + ":/sbin/nologin\n"
	group := "root:x:0:\nnonroot:x:65532:\n"
	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: 65532, gid: 65532},
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
		{name: "usr/local/bin/credbroker", mode: 0o755, data: bin},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mt, Format: tar.FormatPAX, Typeflag: tar.TypeDir}
		if e.data != nil {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
