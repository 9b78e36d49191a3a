package mock_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestMock(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker mock e2e")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
