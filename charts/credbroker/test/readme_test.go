package charttest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEExamplesRender keeps the chart's README honest: its Secret
// decodes strictly into a Secret, and every values example renders and
// decodes strictly.
func TestREADMEExamplesRender(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(repoRoot + "/charts/credbroker/README.md")
	g.Expect(err).NotTo(HaveOccurred())
	section := string(data)

	var secrets, values int
	for _, m := range yamlBlock.FindAllStringSubmatch(section, -1) {
		block := m[1]
		switch {
		case strings.HasPrefix(block, "apiVersion: v1\nkind: Secret\n"):
			var s corev1.Secret
			g.Expect(yaml.UnmarshalStrict([]byte(block), &s)).To(Succeed())
			g.Expect(s.StringData).To(HaveKey("clientsecret"))
			secrets++
		case strings.Contains(block, "{{"):
			// a template excerpt for another chart: covered by testdata/parent
		default:
			t.Run(strings.SplitN(block, "\n", 2)[0], func(t *testing.T) {
				m := mustRender(t, block)
				g := NewWithT(t)
				g.Expect(m.deployment(t).Spec.Template.Spec.InitContainers).To(HaveLen(1))
			})
			values++
		}
	}
	g.Expect(secrets).To(Equal(1))
	g.Expect(values).To(BeNumerically(">=", 2))
}
