package sidecar

import (
	"testing"

	"github.com/credbroker/credbroker/internal/buildinfo"
)

// TestMetricsBuildInfo: the registry /metrics serves has one
// credbroker_build_info series, value 1, labelled with this build.
func TestMetricsBuildInfo(t *testing.T) {
	mfs, err := NewMetrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	bi := buildinfo.Get()
	for _, mf := range mfs {
		if mf.GetName() != "credbroker_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion}
		if len(labels) != len(want) {
			t.Errorf("labels %v, want %v", labels, want)
		}
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, labels[k], v)
			}
		}
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("value %v, want 1", m.GetGauge().GetValue())
		}
		return
	}
	t.Fatal("no credbroker_build_info in the registry")
}
