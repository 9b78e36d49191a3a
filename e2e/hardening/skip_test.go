package hardening_test

import (
	"os"

	. "github.com/onsi/ginkgo/v2"
)

// skipOrFail skips a spec whose setup needs a privilege this machine lacks
// (chattr, a tmpfs mount). Under CI=true it fails instead: CI runs as root,
// and a spec that silently skips there proves nothing.
func skipOrFail(why string) {
	GinkgoHelper()
	if os.Getenv("CI") == "true" {
		Fail("CI=true, but " + why)
	}
	Skip(why)
}
