package charttest

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	helmregistry "helm.sh/helm/v4/pkg/registry"
	corev1 "k8s.io/api/core/v1"
)

// TestChartPushPull packages the chart as `helm package --app-version` does
// for a release, pushes it with Helm's registry client to an in-process OCI
// registry (go-containerregistry's), pulls it back as `helm install
// oci://…` would, and checks the media types Helm uses, that the pulled chart
// is the pushed one, and that its default image tag is the release version:
// the tag make image gives the image.
func TestChartPushPull(t *testing.T) {
	g := NewWithT(t)
	const appVersion = "1.2.3" // make image tags v1.2.3 as 1.2.3

	c := loadChart(t)
	c.Metadata.AppVersion = appVersion
	pkg, err := chartutil.Save(c, t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(pkg)
	g.Expect(err).NotTo(HaveOccurred())

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	u, err := url.Parse(reg.URL)
	g.Expect(err).NotTo(HaveOccurred())
	client, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP(),
		helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")))
	g.Expect(err).NotTo(HaveOccurred())
	ref := u.Host + "/charts/credbroker:" + c.Metadata.Version

	pushed, err := client.Push(data, ref)
	g.Expect(err).NotTo(HaveOccurred())
	pulled, err := client.Pull(ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pulled.Manifest.Digest).To(Equal(pushed.Manifest.Digest))
	g.Expect(bytes.Equal(pulled.Chart.Data, data)).To(BeTrue(), "the pulled package is the pushed one")

	var manifest struct {
		SchemaVersion int `json:"schemaVersion"`
		Config        struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	g.Expect(json.Unmarshal(pulled.Manifest.Data, &manifest)).To(Succeed())
	g.Expect(manifest.SchemaVersion).To(Equal(2), "an OCI image manifest")
	g.Expect(manifest.Config.MediaType).To(Equal(helmregistry.ConfigMediaType))
	g.Expect(manifest.Layers).To(HaveLen(1))
	g.Expect(manifest.Layers[0].MediaType).To(Equal(helmregistry.ChartLayerMediaType))

	got, err := loader.LoadArchive(bytes.NewReader(pulled.Chart.Data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Metadata.Name).To(Equal("credbroker"))
	g.Expect(got.Metadata.AppVersion).To(Equal(appVersion))
	files, err := renderChart(t, got, "{}\n")
	g.Expect(err).NotTo(HaveOccurred())
	m, err := decodeStrict(files)
	g.Expect(err).NotTo(HaveOccurred())
	pod := m.deployment(t).Spec.Template.Spec
	var sc *corev1.Container
	for _, list := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		if c := containerByName(list, sidecarName); c != nil {
			sc = c
		}
	}
	g.Expect(sc).NotTo(BeNil())
	g.Expect(sc.Image).To(Equal("ghcr.io/credbroker/credbroker:" + appVersion))
}
