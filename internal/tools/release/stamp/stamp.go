// Package stamp works out what a release build stamps into credbroker: the
// version (as the Go toolchain names it: the tag vX.Y.Z on a tagged commit,
// else a pseudo-version; +dirty for a tree with changes), the commit
// and the commit time, which is also the build time of a reproducible build.
//
// It reads git because Go's own VCS stamping does not work in a git worktree
// (its .git is a file) or in a Docker build context, and the Makefile's build
// targets must say the same thing in every checkout. Outside git (a source
// tarball) it falls back to VERSION, COMMIT and SOURCE_DATE_EPOCH from the
// environment, then to "(devel)", "unknown" and the Unix epoch.
package stamp

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// Module is the import path of the main module.
const Module = "github.com/credbroker/credbroker"

// Package is where the link-time variables live.
const Package = Module + "/internal/buildinfo"

// Stamp is what a build records.
type Stamp struct {
	Version string    // v1.2.3, a pseudo-version, or (devel)
	Commit  string    // full hash, or unknown
	Time    time.Time // commit time in UTC; zero when unknown
}

// Date is the commit time as the binary prints it (RFC 3339, UTC), or
// "unknown" when nothing says when.
func (s Stamp) Date() string {
	if s.Time.IsZero() {
		return "unknown"
	}
	return s.Time.UTC().Format(time.RFC3339)
}

// ModTime is the time every file of an artefact carries: the commit time, or
// the Unix epoch when it is unknown.
func (s Stamp) ModTime() time.Time {
	if s.Time.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return s.Time
}

// LDFlags are the -X flags that stamp s into the binary.
func (s Stamp) LDFlags() string {
	return fmt.Sprintf("-X %s.version=%s -X %s.commit=%s -X %s.date=%s",
		Package, s.Version, Package, s.Commit, Package, s.Date())
}

// Tag is the image tag (and the chart's appVersion) of a version: without the
// leading v, as Helm charts write appVersion, and '+' (not allowed in a tag)
// as '-'. v1.2.3 is 1.2.3; "(devel)" is devel.
func Tag(version string) string {
	t := strings.TrimPrefix(version, "v")
	t = strings.NewReplacer("+", "-", "(", "", ")", "").Replace(t)
	if t == "" {
		return "devel"
	}
	return t
}

// Root finds the main module's directory: dir or the nearest parent whose
// go.mod declares Module.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			first, _, _ := strings.Cut(string(data), "\n")
			if strings.TrimSpace(first) == "module "+Module {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("stamp: no go.mod of %s in %s or its parents", Module, dir)
		}
	}
}

// Here finds the main module's directory from dir (Root) and returns it
// with its stamp (Of): what every release command starts with.
func Here(dir string) (root string, s Stamp, err error) {
	if root, err = Root(dir); err != nil {
		return "", Stamp{}, err
	}
	s, err = Of(root)
	return root, s, err
}

// Of returns the stamp of the source tree at root.
func Of(root string) (Stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	rev, err := git("rev-parse", "HEAD")
	if err != nil {
		return fromEnv()
	}
	ct, err := git("log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Stamp{}, fmt.Errorf("stamp: commit time %q: %v", ct, err)
	}
	status, err := git("status", "--porcelain")
	if err != nil {
		return Stamp{}, err
	}
	tags, err := git("tag", "--merged", "HEAD", "--list", "v*")
	if err != nil {
		return Stamp{}, err
	}
	atHead, err := git("tag", "--points-at", "HEAD", "--list", "v*")
	if err != nil {
		return Stamp{}, err
	}
	s := Stamp{Commit: rev, Time: time.Unix(sec, 0).UTC()}
	s.Version = version(rev, s.Time, status != "", strings.Fields(tags), strings.Fields(atHead))
	return s, nil
}

// version names a commit as cmd/go (1.24+) does when it stamps a build: the
// highest release tag on the commit itself, else a pseudo-version after the
// highest tag reachable from it; +dirty when the tree has changes.
func version(rev string, t time.Time, dirty bool, reachable, atHead []string) string {
	best := func(tags []string) string {
		b := ""
		for _, tag := range tags {
			if semver.IsValid(tag) && semver.Build(tag) == "" && (semver.Major(tag) == "v0" || semver.Major(tag) == "v1") && (b == "" || semver.Compare(tag, b) > 0) {
				b = tag
			}
		}
		return b
	}
	v := best(atHead)
	if v == "" {
		v = module.PseudoVersion("", best(reachable), t, rev[:12])
	}
	if dirty {
		v += "+dirty"
	}
	return v
}

func fromEnv() (Stamp, error) {
	s := Stamp{Version: os.Getenv("VERSION"), Commit: os.Getenv("COMMIT")}
	if s.Version == "" {
		s.Version = "(devel)"
	}
	if s.Commit == "" {
		s.Commit = "unknown"
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return Stamp{}, fmt.Errorf("stamp: SOURCE_DATE_EPOCH=%q: want seconds since 1970", e)
		}
		s.Time = time.Unix(sec, 0).UTC()
	}
	return s, nil
}
