// Command mkimage builds credbroker's OCI image (make image) from the static
// binary, without a Docker daemon and without a base image: see package image.
// It writes an OCI layout (-o) and, optionally, an OCI archive of it (-tar),
// and can push the index to a registry (-push REF, credentials from docker
// login).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/image"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

func main() {
	out := flag.String("o", "dist/image", "OCI layout directory to write")
	archive := flag.String("tar", "", "also write the layout as an OCI archive (a tar) here")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "platforms of the index, os/arch separated by commas")
	ca := flag.String("ca-bundle", image.DefaultCABundle, "PEM bundle of CA certificates copied into the image")
	push := flag.String("push", "", "push the index to this reference, e.g. ghcr.io/you/credbroker:TAG (TAG defaults to the version)")
	flag.Parse()
	if err := run(*out, *archive, *platforms, *ca, *push); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, archive, platforms, ca, push string) error {
	ps, err := release.ParseTargets(platforms, "linux", "")
	if err != nil {
		return err
	}
	root, s, err := stamp.Here(".")
	if err != nil {
		return err
	}
	idx, err := image.Build(image.Options{Root: root, Stamp: s, Platforms: ps, CABundle: ca})
	if err != nil {
		return err
	}
	tag := image.Tag(s.Version)
	if err := image.WriteLayout(out, idx, tag); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("credbroker %s: OCI layout %s, index %s, tag %s\n", s.Version, out, d, tag)
	if archive != "" {
		if err := image.WriteArchive(out, archive, s.ModTime()); err != nil {
			return err
		}
		fmt.Printf("OCI archive %s\n", archive)
	}
	if push != "" {
		r, err := image.Push(withTag(push, tag), idx)
		if err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", r, d)
	}
	return nil
}

// withTag returns ref with tag added unless it names a tag or digest already
// (registry.example.com:5000/credbroker gets one; …/credbroker:v1 keeps v1).
func withTag(ref, tag string) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	if t, err := name.NewTag(ref); err == nil && strings.HasSuffix(ref, ":"+t.TagStr()) {
		return ref
	}
	return ref + ":" + tag
}
