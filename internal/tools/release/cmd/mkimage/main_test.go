package main

import "testing"

func TestWithTag(t *testing.T) {
	for ref, want := range map[string]string{
		"registry.example.com/credbroker":             "registry.example.com/credbroker:1.2.3",
		"registry.example.com:5000/credbroker":        "registry.example.com:5000/credbroker:1.2.3",
		"registry.example.com:5000/credbroker:edge":   "registry.example.com:5000/credbroker:edge",
		"ghcr.io/you/credbroker@sha256:0123456789abc": "ghcr.io/you/credbroker@sha256:0123456789abc",
	} {
		if got := withTag(ref, "1.2.3"); got != want {
			t.Errorf("withTag(%q) = %q, want %q", ref, got, want)
		}
	}
}
