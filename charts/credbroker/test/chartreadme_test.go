package charttest

import (
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

// TestChartREADME keeps charts/credbroker/README.md honest: its values
// block for a self-built image renders strictly and points the sidecar at
// that image with the pull secret, and the commands it gives use the
// repository path and the make targets that exist.
func TestChartREADME(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile("../README.md")
	g.Expect(err).NotTo(HaveOccurred())
	text := string(data)
	var block string
	for _, b := range yamlBlock.FindAllStringSubmatch(text, -1) {
		if strings.Contains(b[1], "repository: registry.example.com/credbroker\n") {
			block = b[1]
		}
	}
	g.Expect(block).NotTo(BeEmpty(), "the values block for a self-built image")

	m := mustRender(t, block)
	pod := m.deployment(t).Spec.Template.Spec
	var sc *corev1.Container
	for _, list := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		if c := containerByName(list, sidecarName); c != nil {
			sc = c
		}
	}
	g.Expect(sc).NotTo(BeNil())
	g.Expect(sc.Image).To(Equal("registry.example.com/credbroker:1.2.3"))
	g.Expect(pod.ImagePullSecrets).To(Equal([]corev1.LocalObjectReference{{Name: "regcred"}}))

	for _, s := range []string{"helm install shop ./charts/credbroker", "make image", "make image PUSH=", "make chart", "helm.sh/helm/v4/cmd/helm@"} {
		g.Expect(text).To(ContainSubstring(s))
	}
	makefile, err := os.ReadFile(repoRoot + "/Makefile")
	g.Expect(err).NotTo(HaveOccurred())
	for _, target := range []string{"\nimage:", "\nchart:", "\nstamp-tag:"} {
		g.Expect(string(makefile)).To(ContainSubstring(target))
	}
}
