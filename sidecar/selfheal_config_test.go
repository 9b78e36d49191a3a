package sidecar

import (
	"errors"
	"testing"
	"time"
)

func TestSelfHealingConfigKeys(t *testing.T) {
	c, err := ParseConfig([]byte("token_outage_margin: 3s\ntoken_cache_dir: /var/run/credbroker/tokens\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenOutageMargin != 3*time.Second || c.TokenCacheDir != "/var/run/credbroker/tokens" {
		t.Fatalf("got margin %v, dir %q", c.TokenOutageMargin, c.TokenCacheDir)
	}
	_, err = ParseConfig([]byte("token_outage_margin: -1s\n"), "test")
	if !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("a negative margin: %v", err)
	}
}
