// Package testenv holds what tests need to know about the machine they run
// on.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run under CI=true.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips a test whose setup needs something this machine lacks (a
// FIFO, a tmpfs mount, chattr). Under CI=true it fails instead: CI runs as
// root with every tool, and a test that silently skips there proves nothing.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("CI=true, but %s", why)
		return
	}
	t.Skip(why)
}
