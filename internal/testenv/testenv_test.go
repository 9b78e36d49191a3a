package testenv_test

import (
	"testing"

	"github.com/credbroker/credbroker/internal/testenv"
)

// recorder is a testing.TB that records whether the test was skipped or
// failed.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = true }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = true; r.msg = format }

func TestSkipOrFail(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	testenv.SkipOrFail(r, "mkfifo: %v", "EPERM")
	if !r.skipped || r.failed {
		t.Fatalf("outside CI: skipped %v, failed %v; want a skip", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	testenv.SkipOrFail(r, "mkfifo: %v", "EPERM")
	if r.skipped || !r.failed {
		t.Fatalf("under CI=true: skipped %v, failed %v; want a failure", r.skipped, r.failed)
	}
}
