package charttest

import (
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestPersistedPairingSharesOneIdentity: with persist on, the chart creates
// the (empty) identity Secret, a Role granting get and update on that one
// Secret only, binds it to the pods' service account, gives only the
// sidecar a projected API token, CA and namespace, writes persist into the
// config, and allows more than one replica.
func TestPersistedPairingSharesOneIdentity(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["pairing-persisted"])
	name := releaseName + "-credbroker-connector-identity"

	g.Expect(m.secrets).To(HaveLen(1))
	sec := m.secrets[0]
	g.Expect(sec.Name).To(Equal(name))
	g.Expect(sec.Data).To(BeEmpty(), "credbroker fills it; the chart must never overwrite it")
	g.Expect(sec.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))

	g.Expect(m.roles).To(HaveLen(1))
	g.Expect(m.roles[0].Rules).To(Equal([]rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{name}, Verbs: []string{"get", "update"},
	}}), "get and update on that one Secret, no create, no list, no watch")
	g.Expect(m.roleBindings).To(HaveLen(1))
	rb := m.roleBindings[0]
	g.Expect(rb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: m.roles[0].Name}))
	g.Expect(rb.Subjects).To(Equal([]rbacv1.Subject{{Kind: "ServiceAccount", Name: m.serviceAccounts[0].Name, Namespace: namespace}}))

	d := m.deployment(t)
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3), "persistence lifts the one-replica rule")
	pod := d.Spec.Template.Spec
	g.Expect(*pod.AutomountServiceAccountToken).To(BeFalse(), "the app gets no API token")
	sc := containerByName(pod.InitContainers, sidecarName)
	g.Expect(sc.Args).To(ContainElements("--service-account-dir", "/var/run/secrets/credbroker/kube-api"))
	mnt := mountAt(sc.VolumeMounts, "/var/run/secrets/credbroker/kube-api")
	g.Expect(mnt).NotTo(BeNil())
	g.Expect(mnt.ReadOnly).To(BeTrue())
	vol := volumeByName(pod.Volumes, mnt.Name)
	g.Expect(vol.Projected).NotTo(BeNil())
	var paths []string
	for _, src := range vol.Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			paths = append(paths, src.ServiceAccountToken.Path)
		case src.ConfigMap != nil:
			g.Expect(src.ConfigMap.Name).To(Equal("kube-root-ca.crt"))
			paths = append(paths, src.ConfigMap.Items[0].Path)
		case src.DownwardAPI != nil:
			paths = append(paths, src.DownwardAPI.Items[0].Path)
		}
	}
	g.Expect(paths).To(ConsistOf("token", "ca.crt", "namespace"))
	for _, c := range pod.Containers {
		g.Expect(mountAt(c.VolumeMounts, "/var/run/secrets/credbroker/kube-api")).To(BeNil(), "only the sidecar mounts the token")
	}

	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["certificates"]).To(Equal([]any{map[string]any{
		"name": "connector", "dir": "/var/run/credbroker/connector",
		"pairing_url_file": "/etc/credbroker/pairing/connector/pairing-url", "renew": true,
		"persist": map[string]any{"kubernetes_secret": map[string]any{"name": name}},
	}}))
}

// TestPersistOptions: a Secret the user brings (no Secret rendered, the Role
// still names it); persist off keeps the one-replica rule; persist only
// goes with pairing.
func TestPersistOptions(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, `
workload: {replicas: 2}
sidecar:
  certificates:
    - {name: connector, pairing: {secretName: p}, persist: {enabled: true, secretName: my-identity, createSecret: false}}
`)
	g.Expect(m.secrets).To(BeEmpty())
	g.Expect(m.roles[0].Rules[0].ResourceNames).To(Equal([]string{"my-identity"}))

	c := loadChart(t)
	_, err := renderChart(t, c, "workload: {replicas: 2}\nsidecar: {certificates: [{name: c, pairing: {secretName: p}, persist: {enabled: false}}]}\n")
	g.Expect(err).To(MatchError(ContainSubstring("only one pod can use")))
	_, err = renderChart(t, c, "sidecar: {certificates: [{name: c, existingSecret: s, persist: {enabled: true}}]}\n")
	g.Expect(err).To(HaveOccurred(), "persist goes with pairing only")
	_, err = renderChart(t, c, "sidecar: {certificates: [{name: c, pairing: {secretName: p}, persist: {enabled: true, secretName: Bad_Name}}]}\n")
	g.Expect(err).To(HaveOccurred())

	// Without persist, nothing of it is rendered.
	m = mustRender(t, modes["pairing"])
	g.Expect(m.secrets).To(BeEmpty())
	g.Expect(m.roles).To(BeEmpty())
	g.Expect(m.roleBindings).To(BeEmpty())
	pod := m.deployment(t).Spec.Template.Spec
	g.Expect(containerByName(pod.InitContainers, sidecarName).Args).NotTo(ContainElement("--service-account-dir"))
}
