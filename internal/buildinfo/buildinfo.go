// Package buildinfo says which credbroker this is: its version, the commit it
// was built from and when that commit was made.
//
// Two sources, in this order:
//
//   - values stamped at link time with -ldflags "-X" (make build, make dist,
//     make image and the Dockerfile do this, from git), and
//   - what the Go toolchain records by itself (runtime/debug.ReadBuildInfo):
//     the module version for `go install …@vX.Y.Z` (vX.Y.Z), and for a build in
//     a git clone the revision, the commit time and a pseudo-version
//     (+dirty when the tree had changes).
//
// Go does not stamp VCS data in a git worktree (its .git is a file), in a
// source tarball or in a Docker build context without .git; that is why the
// build targets stamp with -ldflags. Fields that no source knows are "unknown".
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time, e.g.
//
//	-ldflags "-X github.com/credbroker/credbroker/internal/buildinfo.version=v1.2.3"
var (
	version string // module version, e.g. v1.2.3 or a pseudo-version
	commit  string // full commit hash
	date    string // commit time, RFC 3339 in UTC
)

// Unknown stands for a field that no source knows.
const Unknown = "unknown"

// Info describes a build.
type Info struct {
	Version   string // v1.2.3, a pseudo-version, or "(devel)"
	Commit    string // full commit hash, or "unknown"
	Date      string // commit time (the build time of a reproducible build), RFC 3339 UTC, or "unknown"
	GoVersion string // the Go toolchain, e.g. go1.26.8
}

// String is the one-line form `credbroker version` prints.
func (i Info) String() string {
	return "credbroker " + i.Version + " (commit " + i.Commit + ", built " + i.Date + ", " + i.GoVersion + ")"
}

// Get returns the build information of the running binary.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve merges the link-time values with the toolchain's build info (bi may
// be nil). Link-time values win field by field.
func resolve(v, c, d string, bi *debug.BuildInfo) Info {
	info := Info{Version: v, Commit: c, Date: d, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		var rev, vtime string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				vtime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Version == "" && bi.Main.Version != "" {
			info.Version = bi.Main.Version
			// Go adds +dirty to the version itself; older toolchains did not.
			if modified && !strings.HasSuffix(info.Version, "+dirty") && info.Version != "(devel)" {
				info.Version += "+dirty"
			}
		}
		if info.Commit == "" {
			info.Commit = rev
		}
		if info.Commit == "" {
			info.Commit = commitOfPseudoVersion(info.Version)
		}
		if info.Date == "" {
			info.Date = vtime
		}
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	if info.Date == "" {
		info.Date = Unknown
	}
	return info
}

// commitOfPseudoVersion returns the abbreviated commit of a pseudo-version
// (v0.0.0-20260102150405-abcdefabcdef, vX.Y.(Z+1)-0.yyyymmddhhmmss-abcdefabcdef,
// optionally +dirty or +incompatible), or "" for a release version.
func commitOfPseudoVersion(v string) string {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	i := strings.LastIndexByte(v, '-')
	if i < 0 {
		return ""
	}
	rev, rest := v[i+1:], v[:i]
	j := strings.LastIndexAny(rest, "-.")
	if len(rev) != 12 || j < 0 || len(rest)-j-1 != 14 || !isDigits(rest[j+1:]) || !isHex(rev) {
		return ""
	}
	return rev
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return s != ""
}
