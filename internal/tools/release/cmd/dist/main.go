// Command dist makes credbroker's release artefacts in a directory (make
// dist): reproducible archives for linux and darwin on amd64 and arm64, a
// CycloneDX SBOM for each, and SHA256SUMS. See package dist.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/credbroker/credbroker/internal/tools/release"
	"github.com/credbroker/credbroker/internal/tools/release/dist"
	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

func main() {
	out := flag.String("o", "dist", "output directory")
	targets := flag.String("targets", "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64", "platforms, os/arch separated by commas (host: this machine's)")
	sbom := flag.Bool("sbom", true, "write a CycloneDX SBOM per platform")
	flag.Parse()
	if err := run(*out, *targets, *sbom); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func run(out, targets string, sbom bool) error {
	ts, err := release.ParseTargets(targets, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return err
	}
	root, s, err := stamp.Here(".")
	if err != nil {
		return err
	}
	names, err := dist.Run(dist.Options{Root: root, Out: out, Targets: ts, SBOM: sbom, Stamp: s})
	if err != nil {
		return err
	}
	fmt.Printf("credbroker %s (commit %s, %s) in %s:\n", s.Version, s.Commit, s.Date(), out)
	for _, n := range names {
		fmt.Println("  " + n)
	}
	return nil
}
