package charttest

import (
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	corev1 "k8s.io/api/core/v1"
)

// TestNamedTemplatesInAnotherChart renders testdata/parent, an application
// chart that has this chart as a dependency and puts credbroker into its own
// Deployment with include "credbroker.sidecar" and "credbroker.volumes".
func TestNamedTemplatesInAnotherChart(t *testing.T) {
	for _, mode := range []string{"native", "classic"} {
		t.Run(mode, func(t *testing.T) {
			g := NewWithT(t)
			parent, err := loader.Load("testdata/parent")
			g.Expect(err).NotTo(HaveOccurred())
			parent.AddDependency(loadChart(t))
			files, err := renderChart(t, parent, "credbroker: {sidecar: {mode: "+mode+"}}\n")
			g.Expect(err).NotTo(HaveOccurred())
			m, err := decodeStrict(files)
			g.Expect(err).NotTo(HaveOccurred())

			// The credbroker chart rendered only its ConfigMap; the parent owns the Deployment.
			g.Expect(m.services).To(BeEmpty())
			g.Expect(m.serviceAccounts).To(BeEmpty())
			d := m.deployment(t)
			g.Expect(d.Name).To(Equal("shop-shop"))
			cm := m.configMap(t)
			g.Expect(routesConfig(t, cm)["routes"]).To(HaveLen(1))

			pod := d.Spec.Template.Spec
			var sc *corev1.Container
			if mode == "native" {
				sc = containerByName(pod.InitContainers, sidecarName)
				g.Expect(sc).NotTo(BeNil())
				g.Expect(sc.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
			} else {
				sc = containerByName(pod.Containers, sidecarName)
				g.Expect(sc).NotTo(BeNil())
				g.Expect(sc.RestartPolicy).To(BeNil())
			}
			g.Expect(sc.Image).To(Equal("ghcr.io/credbroker/credbroker:0.1.0"))
			g.Expect(sc.StartupProbe.HTTPGet.Path).To(Equal("/readyz"))
			g.Expect(sc.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))

			// The included volumes point at the ConfigMap the subchart rendered.
			cfgVol := volumeByName(pod.Volumes, mountAt(sc.VolumeMounts, "/etc/credbroker/config").Name)
			g.Expect(cfgVol.ConfigMap.Name).To(Equal(cm.Name))
			bindVol := volumeByName(pod.Volumes, mountAt(sc.VolumeMounts, "/bindings/my-xsuaa").Name)
			g.Expect(bindVol.Secret.SecretName).To(Equal("xsuaa-binding"))
			g.Expect(d.Spec.Template.Annotations["checksum/credbroker-config"]).To(HaveLen(64))
		})
	}
}

// TestWorkloadDisabledRendersOnlyTheConfigMap: the chart used as a dependency.
func TestWorkloadDisabledRendersOnlyTheConfigMap(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, "workload: {enabled: false}\n")
	g.Expect(m.deployments).To(BeEmpty())
	g.Expect(m.services).To(BeEmpty())
	g.Expect(m.serviceAccounts).To(BeEmpty())
	g.Expect(m.configMaps).To(HaveLen(1))
	g.Expect(m.notes).To(ContainSubstring("credbroker.sidecar"))
}
