package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	cases := []struct {
		name    string
		v, c, d string
		bi      *debug.BuildInfo
		want    Info
	}{
		{
			name: "go install of a release: the module version, no VCS data",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: Info{Version: "v1.2.3", Commit: Unknown, Date: Unknown, GoVersion: "go1.26.8"},
		},
		{
			name: "go install of a pseudo-version: the commit comes from the version",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261204211509-d6744d077f2e"}},
			want: Info{Version: "v0.0.0-20261204211509-d6744d077f2e", Commit: "d6744d077f2e", Date: Unknown, GoVersion: "go1.26.8"},
		},
		{
			name: "go build in a clone with changes",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.1-0.20261204211509-d6744d077f2e+dirty"},
				Settings: vcs("vcs.revision", "d6744d077f2e77d3fe1927b9879bc7c090bcf503", "vcs.time", "2026-12-04T21:15:09Z", "vcs.modified", "true")},
			want: Info{Version: "v0.1.1-0.20261204211509-d6744d077f2e+dirty", Commit: "d6744d077f2e77d3fe1927b9879bc7c090bcf503", Date: "2026-12-04T21:15:09Z", GoVersion: "go1.26.8"},
		},
		{
			name: "an older toolchain that did not add +dirty",
			bi: &debug.BuildInfo{GoVersion: "go1.23.0", Main: debug.Module{Version: "v0.0.0-20261204211509-d6744d077f2e"},
				Settings: vcs("vcs.revision", "d6744d077f2e77d3fe1927b9879bc7c090bcf503", "vcs.modified", "true")},
			want: Info{Version: "v0.0.0-20261204211509-d6744d077f2e+dirty", Commit: "d6744d077f2e77d3fe1927b9879bc7c090bcf503", Date: Unknown, GoVersion: "go1.23.0"},
		},
		{
			name: "link-time values win",
			v:    "v2.0.0", c: "0123456789abcdef0123456789abcdef01234567", d: "2026-01-02T03:04:05Z",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
				Settings: vcs("vcs.revision", "d6744d077f2e77d3fe1927b9879bc7c090bcf503", "vcs.time", "2026-12-04T21:15:09Z")},
			want: Info{Version: "v2.0.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8"},
		},
		{
			name: "a worktree build without stamping",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "(devel)", Commit: Unknown, Date: Unknown, GoVersion: "go1.26.8"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolve(tc.v, tc.c, tc.d, tc.bi); got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := resolve("", "", "", nil); got.Version != "(devel)" || got.Commit != Unknown || got.GoVersion == "" {
		t.Errorf("resolve without build info = %+v", got)
	}
}

func TestCommitOfPseudoVersion(t *testing.T) {
	for v, want := range map[string]string{
		"v0.0.0-20261204211509-d6744d077f2e":         "d6744d077f2e",
		"v0.1.1-0.20261204211509-d6744d077f2e+dirty": "d6744d077f2e",
		"v1.2.4-pre.0.20261204211509-d6744d077f2e":   "d6744d077f2e",
		"v1.2.3":                             "",
		"v1.2.3-rc.1":                        "",
		"(devel)":                            "",
		"v0.0.0-2026120421150-d6744d077f2e":  "",
		"v0.0.0-20261204211509-D6744D077F2E": "",
	} {
		if got := commitOfPseudoVersion(v); got != want {
			t.Errorf("commitOfPseudoVersion(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc", Date: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8"}
	if got, want := i.String(), "credbroker v1.2.3 (commit abc, built 2026-01-02T03:04:05Z, go1.26.8)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
