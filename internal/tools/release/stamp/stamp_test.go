package stamp

import (
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	rev := "d6744d077f2e77d3fe1927b9879bc7c090bcf503"
	at := time.Date(2026, 12, 4, 21, 15, 9, 0, time.UTC)
	cases := []struct {
		name              string
		dirty             bool
		reachable, atHead []string
		want              string
	}{
		{"no tags", false, nil, nil, "v0.0.0-20261204211509-d6744d077f2e"},
		{"no tags, changes", true, nil, nil, "v0.0.0-20261204211509-d6744d077f2e+dirty"},
		{"tagged and clean", false, []string{"v0.1.0", "v0.2.0"}, []string{"v0.2.0"}, "v0.2.0"},
		{"tagged with changes", true, []string{"v0.2.0"}, []string{"v0.2.0"}, "v0.2.0+dirty"},
		{"after a tag", false, []string{"v0.1.0", "v0.10.0", "v0.9.0"}, nil, "v0.10.1-0.20261204211509-d6744d077f2e"},
		{"after a pre-release", false, []string{"v1.0.0-rc.1"}, nil, "v1.0.0-rc.1.0.20261204211509-d6744d077f2e"},
		{"tags that are no module versions are ignored", false, []string{"v2.0.0", "vnext", "v1.0.0+meta"}, []string{"v2.0.0"}, "v0.0.0-20261204211509-d6744d077f2e"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := version(rev, at, tc.dirty, tc.reachable, tc.atHead); got != tc.want {
				t.Errorf("version = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("VERSION", "v1.2.3")
	t.Setenv("COMMIT", "abc")
	t.Setenv("SOURCE_DATE_EPOCH", "1767323045")
	s, err := fromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "v1.2.3" || s.Commit != "abc" || s.Date() != "2026-01-02T03:04:05Z" {
		t.Errorf("fromEnv = %+v (date %s)", s, s.Date())
	}
	t.Setenv("VERSION", "")
	t.Setenv("COMMIT", "")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	s, err = fromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "(devel)" || s.Commit != "unknown" || s.Date() != "unknown" || !s.ModTime().Equal(time.Unix(0, 0)) {
		t.Errorf("fromEnv without a source = %+v", s)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := fromEnv(); err == nil {
		t.Error("a SOURCE_DATE_EPOCH that is no number was accepted")
	}
}
