package sidecar

import "testing"

func TestOwnHeaderNames(t *testing.T) {
	for _, c := range []struct {
		name string
		own  bool
	}{
		{"X-Credbroker-Error", true},
		{"x-credbroker-error", true},
		{"X-CREDBROKER-ROUTE", true},
		{"X-Credbroker-", false}, // no name after the prefix: not a field credbroker sets
		{"X-Credbroker", false},
		{"X-Credbrokers-Error", false},
		{"X-Upstream", false},
		{"", false},
	} {
		if got := isOwnHeader(c.name); got != c.own {
			t.Errorf("isOwnHeader(%q) = %v, want %v", c.name, got, c.own)
		}
		want := rfOther
		if c.own {
			want = rfOwn
		}
		if got := respFieldKind([]byte(c.name)); got != want {
			t.Errorf("respFieldKind(%q) = %d, want %d (the fast path must agree with net/http's)", c.name, got, want)
		}
	}
}
