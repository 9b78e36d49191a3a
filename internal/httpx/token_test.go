package httpx

import "testing"

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"X-Tenant": true, "x_tenant.v2": true, "!#$%&'*+-.^_`|~09azAZ": true,
		"": false, "X Tenant": false, "X-Tenant:": false, "Ä": false, "a\tb": false, "a\r\n": false, "(x)": false,
	} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
}
