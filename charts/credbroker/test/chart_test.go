package charttest

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	adminPort   = 9411
	sidecarName = "credbroker"
	appName     = "app"
)

// modes are the value sets every generic check runs against: the defaults and
// each mode of the chart.
var modes = map[string]string{
	"defaults": ``,
	"pairing-persisted": `
workload:
  replicas: 3
sidecar:
  certificates:
    - {name: connector, pairing: {secretName: pairing-token}, persist: {enabled: true}}
  config:
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector}}
`,
	"native": `
sidecar:
  mode: native
  config:
    routes:
      - name: orders
        upstream: https://orders.example.com
        auth: {type: bearer, binding: my-xsuaa, scopes: [orders.read], tenant_header: X-Tenant}
  bindings:
    - {name: my-xsuaa, secretName: xsuaa-binding}
`,
	"classic": `
sidecar:
  mode: classic
  bindings:
    - {name: my-xsuaa, secretName: xsuaa-binding}
`,
	"existing-cert-secret": `
sidecar:
  certificates:
    - {name: connector, existingSecret: connector-pair}
  config:
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector}}
`,
	"pairing": `
sidecar:
  certificates:
    - name: connector
      pairing: {secretName: pairing-token, key: url}
      sizeLimit: 2Mi
  config:
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector}}
`,
	"inbound": `
sidecar:
  bindings:
    - {name: my-xsuaa, secretName: xsuaa-binding}
  inbound:
    enabled: true
    port: 8443
    appPort: 8080
    rules:
      - {path: /api/, accept: [jwt], binding: my-xsuaa, scopes: [read]}
`,
	"destinations": `
sidecar:
  bindings:
    - {name: my-destination, secretName: destination-binding}
    - {name: my-connectivity, secretName: connectivity-binding}
  destinations:
    routes:
      - {name: erp, destination: S4HANA, binding: my-destination, connectivity: my-connectivity, tenant_header: X-Tenant}
    connectivityProxy: {host: connectivity-proxy.kyma-system.svc.cluster.local, port: 20004}
`,
	"several-bindings": `
sidecar:
  bindingRoot: /var/run/bindings
  bindings:
    - {name: my-xsuaa, secretName: xsuaa-binding}
    - {name: my-ias, secretName: ias-binding}
    - {name: destination.v1, secretName: destination-operator-secret}
  config:
    token_api: {bindings: ["*"]}
    routes:
      - {name: orders, upstream: "https://orders.example.com", auth: {type: bearer, binding: my-xsuaa}}
      - {name: users, upstream: "https://users.example.com", auth: {type: bearer, binding: my-ias, grant: jwt-bearer}}
`,
}

// TestLint runs what `helm lint --strict` runs (Chart.yaml, values.yaml
// against the schema, every template rendered and parsed) for each mode.
func TestLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			vals, err := common.ReadValues([]byte(values))
			g.Expect(err).NotTo(HaveOccurred())
			linter := lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(kv))
			var problems []string
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev { // --strict: warnings fail too
					problems = append(problems, m.Error())
				}
			}
			g.Expect(problems).To(BeEmpty())
		})
	}
}

// TestEveryModeRendersValidManifests renders each mode, decodes every manifest
// strictly and checks what must hold in all of them: the sidecar is where its
// mode says, its probes are on the admin port, its security context is
// restrictive, and it mounts the config.
func TestEveryModeRendersValidManifests(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			m := mustRender(t, values)
			d := m.deployment(t)
			pod := d.Spec.Template.Spec
			cm := m.configMap(t)
			g.Expect(m.serviceAccounts).To(HaveLen(1))
			g.Expect(m.services).To(HaveLen(1))

			var sc *corev1.Container
			if strings.Contains(values, "mode: classic") {
				g.Expect(pod.InitContainers).To(BeEmpty())
				sc = containerByName(pod.Containers, sidecarName)
				g.Expect(sc).NotTo(BeNil(), "classic mode: the sidecar is a regular container")
				g.Expect(sc.RestartPolicy).To(BeNil())
			} else {
				sc = containerByName(pod.InitContainers, sidecarName)
				g.Expect(sc).NotTo(BeNil(), "native mode: the sidecar is an init container")
				g.Expect(containerByName(pod.Containers, sidecarName)).To(BeNil())
				g.Expect(sc.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
			}
			g.Expect(containerByName(pod.Containers, appName)).NotTo(BeNil())

			g.Expect(sc.Args[:3]).To(Equal([]string{"run", "--config", "/etc/credbroker/config/config.yaml"}))
			g.Expect(sc.Image).To(Equal("ghcr.io/credbroker/credbroker:0.1.0"), "the tag defaults to the chart's appVersion")

			// Probes: startup and readiness on /readyz, liveness on /healthz, all on the admin port.
			for probe, want := range map[*corev1.Probe]string{sc.StartupProbe: "/readyz", sc.ReadinessProbe: "/readyz", sc.LivenessProbe: "/healthz"} {
				g.Expect(probe).NotTo(BeNil())
				g.Expect(probe.HTTPGet).NotTo(BeNil())
				g.Expect(probe.HTTPGet.Path).To(Equal(want))
				g.Expect(probe.HTTPGet.Port).To(Equal(intstr.FromInt32(adminPort)))
			}
			g.Expect(sc.Ports).To(ContainElement(corev1.ContainerPort{Name: "cb-admin", ContainerPort: adminPort, Protocol: corev1.ProtocolTCP}))

			// Security context of the sidecar.
			sec := sc.SecurityContext
			g.Expect(sec).NotTo(BeNil())
			g.Expect(sec.RunAsNonRoot).To(HaveValue(BeTrue()))
			g.Expect(sec.RunAsUser).To(HaveValue(BeNumerically(">", 0)))
			g.Expect(sec.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
			g.Expect(sec.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
			g.Expect(sec.Privileged).To(HaveValue(BeFalse()))
			g.Expect(sec.Capabilities).NotTo(BeNil())
			g.Expect(sec.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
			g.Expect(sec.Capabilities.Add).To(BeEmpty())
			g.Expect(sec.SeccompProfile).To(HaveValue(HaveField("Type", corev1.SeccompProfileTypeRuntimeDefault)))
			g.Expect(pod.SecurityContext).NotTo(BeNil())
			g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))

			// Small resources by default.
			g.Expect(sc.Resources.Requests.Memory().Cmp(resource.MustParse("32Mi"))).To(Equal(0))
			g.Expect(sc.Resources.Limits.Memory().Cmp(resource.MustParse("64Mi"))).To(Equal(0))

			// The config: mounted read-only from the ConfigMap, listen on loopback, admin on all
			// addresses with the explicit permission.
			cfgMount := mountAt(sc.VolumeMounts, "/etc/credbroker/config")
			g.Expect(cfgMount).NotTo(BeNil())
			g.Expect(cfgMount.ReadOnly).To(BeTrue())
			cfgVol := volumeByName(pod.Volumes, cfgMount.Name)
			g.Expect(cfgVol).NotTo(BeNil())
			g.Expect(cfgVol.ConfigMap).NotTo(BeNil())
			g.Expect(cfgVol.ConfigMap.Name).To(Equal(cm.Name))
			cfg := routesConfig(t, cm)
			g.Expect(cfg).To(HaveKeyWithValue("listen", "127.0.0.1:8411"))
			g.Expect(cfg).To(HaveKeyWithValue("admin_listen", "0.0.0.0:9411"))
			g.Expect(cfg).To(HaveKeyWithValue("allow_non_loopback", true))
			g.Expect(d.Spec.Template.Annotations).To(HaveKey("checksum/credbroker-config"))

			// Every volume the sidecar mounts exists in the pod.
			for _, vm := range sc.VolumeMounts {
				g.Expect(volumeByName(pod.Volumes, vm.Name)).NotTo(BeNil(), "volume %s", vm.Name)
			}
			// The app mounts none of credbroker's volumes: it never sees a secret.
			for _, vm := range containerByName(pod.Containers, appName).VolumeMounts {
				g.Expect(vm.Name).NotTo(HavePrefix("credbroker-"))
			}

			g.Expect(m.notes).To(ContainSubstring("/readyz"))
		})
	}
}

func TestDefaults(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["defaults"])
	d := m.deployment(t)
	g.Expect(d.Name).To(Equal("shop-credbroker"))
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
	pod := d.Spec.Template.Spec
	g.Expect(pod.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
	g.Expect(pod.InitContainers).To(HaveLen(1))
	g.Expect(pod.Containers).To(HaveLen(1))
	sc := pod.InitContainers[0]
	g.Expect(sc.StartupProbe.FailureThreshold).To(BeEquivalentTo(120))
	g.Expect(sc.StartupProbe.PeriodSeconds).To(BeEquivalentTo(1))
	g.Expect(sc.Env).To(ConsistOf(
		corev1.EnvVar{Name: "CREDBROKER_LOG_FORMAT", Value: "json"},
		corev1.EnvVar{Name: "CREDBROKER_LOG_LEVEL", Value: "info"},
	), "no SERVICE_BINDING_ROOT without bindings: credbroker would refuse a missing directory")
	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg).To(HaveKeyWithValue("routes", BeEmpty()))
	g.Expect(cfg).NotTo(HaveKey("certificates"))
	g.Expect(cfg).NotTo(HaveKey("inbound"))

	svc := m.service(t)
	g.Expect(svc.Spec.Ports).To(HaveLen(1))
	g.Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(80))
	g.Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("http")))
	g.Expect(svc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))
	g.Expect(d.Spec.Template.Labels).To(Equal(d.Spec.Selector.MatchLabels))
}

func TestRoutesConfigMap(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["native"])
	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["routes"]).To(Equal([]any{map[string]any{
		"name":     "orders",
		"upstream": "https://orders.example.com",
		"auth": map[string]any{
			"type": "bearer", "binding": "my-xsuaa", "scopes": []any{"orders.read"}, "tenant_header": "X-Tenant",
		},
	}}))

	// A changed config changes the checksum, so the pods roll.
	other := mustRender(t, strings.Replace(modes["native"], "orders.read", "orders.write", 1))
	g.Expect(other.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]).
		NotTo(Equal(m.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]))
}

func TestSeveralBindingsAreMountedUnderTheBindingRoot(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["several-bindings"])
	pod := m.deployment(t).Spec.Template.Spec
	sc := containerByName(pod.InitContainers, sidecarName)
	g.Expect(sc.Env).To(ContainElement(corev1.EnvVar{Name: "SERVICE_BINDING_ROOT", Value: "/var/run/bindings"}))
	for name, secret := range map[string]string{
		"my-xsuaa":       "xsuaa-binding",
		"my-ias":         "ias-binding",
		"destination.v1": "destination-operator-secret",
	} {
		vm := mountAt(sc.VolumeMounts, "/var/run/bindings/"+name)
		g.Expect(vm).NotTo(BeNil(), "binding %s is mounted", name)
		g.Expect(vm.ReadOnly).To(BeTrue())
		g.Expect(vm.SubPath).To(BeEmpty(), "a subPath mount would not see rotated Secrets")
		vol := volumeByName(pod.Volumes, vm.Name)
		g.Expect(vol.Secret).NotTo(BeNil())
		g.Expect(vol.Secret.SecretName).To(Equal(secret))
		g.Expect(vol.Secret.DefaultMode).To(HaveValue(BeEquivalentTo(0o440)))
		g.Expect(vol.Secret.Items).To(BeEmpty(), "one file per key of the Secret")
	}
	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["routes"]).To(HaveLen(2))
	g.Expect(cfg).To(HaveKeyWithValue("token_api", map[string]any{"bindings": []any{"*"}}))
}

func TestExistingCertificateSecret(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["existing-cert-secret"])
	pod := m.deployment(t).Spec.Template.Spec
	sc := containerByName(pod.InitContainers, sidecarName)
	vm := mountAt(sc.VolumeMounts, "/var/run/credbroker/connector")
	g.Expect(vm).NotTo(BeNil())
	g.Expect(vm.ReadOnly).To(BeTrue())
	vol := volumeByName(pod.Volumes, vm.Name)
	g.Expect(vol.Secret).NotTo(BeNil())
	g.Expect(vol.Secret.SecretName).To(Equal("connector-pair"))
	g.Expect(vol.EmptyDir).To(BeNil())

	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["certificates"]).To(Equal([]any{map[string]any{
		"name": "connector", "dir": "/var/run/credbroker/connector", "renew": false,
	}}))
}

func TestPairingAtStartUsesAMemoryBackedEmptyDir(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["pairing"])
	pod := m.deployment(t).Spec.Template.Spec
	sc := containerByName(pod.InitContainers, sidecarName)

	certMount := mountAt(sc.VolumeMounts, "/var/run/credbroker/connector")
	g.Expect(certMount).NotTo(BeNil())
	g.Expect(certMount.ReadOnly).To(BeFalse(), "credbroker writes the pair it gets")
	certVol := volumeByName(pod.Volumes, certMount.Name)
	g.Expect(certVol.EmptyDir).NotTo(BeNil())
	g.Expect(certVol.EmptyDir.Medium).To(Equal(corev1.StorageMediumMemory))
	g.Expect(certVol.EmptyDir.SizeLimit).NotTo(BeNil())
	g.Expect(certVol.EmptyDir.SizeLimit.Cmp(resource.MustParse("2Mi"))).To(Equal(0))

	pairMount := mountAt(sc.VolumeMounts, "/etc/credbroker/pairing/connector")
	g.Expect(pairMount).NotTo(BeNil())
	g.Expect(pairMount.ReadOnly).To(BeTrue())
	pairVol := volumeByName(pod.Volumes, pairMount.Name)
	g.Expect(pairVol.Secret).NotTo(BeNil())
	g.Expect(pairVol.Secret.SecretName).To(Equal("pairing-token"))
	g.Expect(pairVol.Secret.Items).To(Equal([]corev1.KeyToPath{{Key: "url", Path: "pairing-url"}}))

	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["certificates"]).To(Equal([]any{map[string]any{
		"name": "connector", "dir": "/var/run/credbroker/connector",
		"pairing_url_file": "/etc/credbroker/pairing/connector/pairing-url", "renew": true,
	}}))

	// The defaults: key pairing-url, 1Mi, and renew can be switched off.
	m = mustRender(t, `
sidecar:
  certificates:
    - {name: connector, pairing: {secretName: pairing-token}, renew: false}
    - {name: xsuaa-x509, binding: my-xsuaa}
`)
	pod = m.deployment(t).Spec.Template.Spec
	sc = containerByName(pod.InitContainers, sidecarName)
	certVol = volumeByName(pod.Volumes, mountAt(sc.VolumeMounts, "/var/run/credbroker/connector").Name)
	g.Expect(certVol.EmptyDir.SizeLimit.Cmp(resource.MustParse("1Mi"))).To(Equal(0))
	pairVol = volumeByName(pod.Volumes, mountAt(sc.VolumeMounts, "/etc/credbroker/pairing/connector").Name)
	g.Expect(pairVol.Secret.Items).To(Equal([]corev1.KeyToPath{{Key: "pairing-url", Path: "pairing-url"}}))
	g.Expect(mountAt(sc.VolumeMounts, "/var/run/credbroker/xsuaa-x509")).To(BeNil(), "a binding's certificate needs no volume")
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg["certificates"]).To(Equal([]any{
		map[string]any{"name": "connector", "dir": "/var/run/credbroker/connector", "pairing_url_file": "/etc/credbroker/pairing/connector/pairing-url", "renew": false},
		map[string]any{"name": "xsuaa-x509", "binding": "my-xsuaa"},
	}))
}

func TestTwoPhasePairingKeepsTheRuntimeCertificate(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, `
sidecar:
  certificates:
    - {name: connector, pairing: {secretName: pairing-token}, twoPhase: true}
  config:
    routes:
      - {name: registry, upstream: "https://registry.example.com", auth: {type: mtls, certificate: connector}}
      - {name: events, upstream: "https://events.example.com", auth: {type: mtls, certificate: connector-runtime}}
`)
	pod := m.deployment(t).Spec.Template.Spec
	sc := containerByName(pod.InitContainers, sidecarName)
	vm := mountAt(sc.VolumeMounts, "/var/run/credbroker/connector-runtime")
	g.Expect(vm).NotTo(BeNil())
	g.Expect(vm.ReadOnly).To(BeFalse())
	vol := volumeByName(pod.Volumes, vm.Name)
	g.Expect(vol.EmptyDir).NotTo(BeNil())
	g.Expect(vol.EmptyDir.Medium).To(Equal(corev1.StorageMediumMemory))
	g.Expect(vol.EmptyDir.SizeLimit).NotTo(BeNil())
	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["certificates"]).To(Equal([]any{map[string]any{
		"name": "connector", "dir": "/var/run/credbroker/connector", "runtime_dir": "/var/run/credbroker/connector-runtime",
		"pairing_url_file": "/etc/credbroker/pairing/connector/pairing-url", "renew": true,
	}}))

	// <name>-runtime exists only with twoPhase.
	_, err := renderChart(t, loadChart(t), `
sidecar:
  certificates: [{name: connector, pairing: {secretName: pairing-token}}]
  config: {routes: [{name: events, upstream: "https://events.example.com", auth: {type: mtls, certificate: connector-runtime}}]}
`)
	g.Expect(err).To(MatchError(ContainSubstring(`certificate "connector-runtime" is not in sidecar.certificates`)))
}

func TestInboundGuardIsExposedThroughTheService(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, modes["inbound"])
	pod := m.deployment(t).Spec.Template.Spec
	sc := containerByName(pod.InitContainers, sidecarName)
	g.Expect(sc.Ports).To(ContainElement(corev1.ContainerPort{Name: "cb-inbound", ContainerPort: 8443, Protocol: corev1.ProtocolTCP}))

	svc := m.service(t)
	g.Expect(svc.Spec.Ports).To(HaveLen(1))
	g.Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("cb-inbound")), "callers reach the app only through the guard")

	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["inbound"]).To(Equal(map[string]any{
		"listen": "0.0.0.0:8443",
		"app":    "http://127.0.0.1:8080",
		"rules":  []any{map[string]any{"path": "/api/", "accept": []any{"jwt"}, "binding": "my-xsuaa", "scopes": []any{"read"}}},
	}))
	g.Expect(m.notes).To(ContainSubstring("inbound guard"))

	// Off: no port, the Service targets the app.
	m = mustRender(t, ``)
	sc = containerByName(m.deployment(t).Spec.Template.Spec.InitContainers, sidecarName)
	for _, p := range sc.Ports {
		g.Expect(p.Name).NotTo(Equal("cb-inbound"))
	}
	g.Expect(m.service(t).Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("http")))

	// TLS by a named certificate.
	m = mustRender(t, `
sidecar:
  certificates: [{name: server, existingSecret: server-tls}]
  inbound: {enabled: true, tlsCertificate: server, rules: [{path: /, accept: [mtls], ca_file: /etc/ca.crt}]}
`)
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg["inbound"]).To(HaveKeyWithValue("tls", map[string]any{"certificate": "server"}))

	// Trusted proxies for the OAuth 1.0a base URL.
	m = mustRender(t, `
sidecar:
  inbound: {enabled: true, trustedProxies: [10.0.0.0/8], rules: [{path: /aps/, accept: [oauth1], oauth1: {key_file: /k, secret_file: /s}}]}
`)
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg["inbound"]).To(HaveKeyWithValue("trusted_proxies", []any{"10.0.0.0/8"}))
	g.Expect(cfg["inbound"]).NotTo(HaveKey("xfcc"))

	// Client certificates from the Istio ingress gateway, through the pod's sidecar.
	m = mustRender(t, `
sidecar:
  inbound:
    enabled: true
    xfcc: {trusted_proxies: [127.0.0.6], format: envoy, hops: 2, proxy_uris: ["spiffe://cluster.local/ns/istio-system/sa/gw"]}
    rules: [{path: /cb/, accept: [mtls], ca_file: /etc/ca.crt}]
`)
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg["inbound"]).To(HaveKeyWithValue("xfcc", map[string]any{
		"trusted_proxies": []any{"127.0.0.6"}, "format": "envoy", "hops": float64(2), "proxy_uris": []any{"spiffe://cluster.local/ns/istio-system/sa/gw"}}))
	_, err := renderChart(t, loadChart(t), `
sidecar:
  inbound: {enabled: true, xfcc: {trusted_proxies: [127.0.0.6], format: pem}, rules: [{path: /, accept: [mtls], ca_file: /c}]}
`)
	g.Expect(err).To(MatchError(ContainSubstring("format")))
}

func TestAppContainerIsPassedThrough(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, `
app:
  name: shop
  image: {repository: example.com/shop, tag: "1.2.3", pullPolicy: Always}
  args: [serve]
  ports: [{name: web, containerPort: 3000}]
  env: [{name: ORDERS_URL, value: "http://127.0.0.1:8411/orders"}]
  readinessProbe: {httpGet: {path: /ready, port: web}, periodSeconds: 3}
  resources: {requests: {cpu: 100m, memory: 128Mi}}
service: {targetPort: web, port: 8080}
sidecar:
  image: {repository: registry.example.com/credbroker, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
`)
	pod := m.deployment(t).Spec.Template.Spec
	app := containerByName(pod.Containers, "shop")
	g.Expect(app).NotTo(BeNil())
	g.Expect(app.Image).To(Equal("example.com/shop:1.2.3"))
	g.Expect(app.ImagePullPolicy).To(Equal(corev1.PullAlways))
	g.Expect(app.Args).To(Equal([]string{"serve"}))
	g.Expect(app.Ports).To(Equal([]corev1.ContainerPort{{Name: "web", ContainerPort: 3000}}))
	g.Expect(app.Env).To(Equal([]corev1.EnvVar{{Name: "ORDERS_URL", Value: "http://127.0.0.1:8411/orders"}}))
	g.Expect(app.ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromString("web")))
	g.Expect(app.Resources.Requests.Cpu().String()).To(Equal("100m"))
	sc := containerByName(pod.InitContainers, sidecarName)
	g.Expect(sc.Image).To(Equal("registry.example.com/credbroker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	g.Expect(m.service(t).Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("web")))
}

// TestSchemaRejectsBadValues: unknown keys and wrong types fail before any
// template renders.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := []schemaCase{
		{"unknown top-level key", "replicaCount: 2\n", "replicaCount"},
		{"unknown sidecar key", "sidecar: {adminPortt: 9411}\n", "adminPortt"},
		{"unknown binding key", "sidecar: {bindings: [{name: a, secretName: b, secret: c}]}\n", "secret"},
		{"binding without secretName", "sidecar: {bindings: [{name: a}]}\n", "secretName"},
		{"wrong type: port as string", "sidecar: {adminPort: \"9411\"}\n", "adminPort"},
		{"wrong type: bindings as map", "sidecar: {bindings: {a: b}}\n", "bindings"},
		{"wrong type: enabled as string", "sidecar: {inbound: {enabled: \"yes\"}}\n", "enabled"},
		{"port out of range", "sidecar: {listenPort: 70000}\n", "listenPort"},
		{"unknown mode", "sidecar: {mode: ambient}\n", "mode"},
		{"unknown log level", "sidecar: {logLevel: verbose}\n", "logLevel"},
		{"certificate with two sources", "sidecar: {certificates: [{name: c, existingSecret: s, pairing: {secretName: p}}]}\n", "certificates"},
		{"certificate without source", "sidecar: {certificates: [{name: c}]}\n", "certificates"},
		{"twoPhase on an existing Secret", "sidecar: {certificates: [{name: c, existingSecret: s, twoPhase: true}]}\n", "certificates"},
		{"twoPhase as a string", "sidecar: {certificates: [{name: c, pairing: {secretName: p}, twoPhase: \"yes\"}]}\n", "twoPhase"},
		{"sizeLimit on an existing Secret", "sidecar: {certificates: [{name: c, existingSecret: s, sizeLimit: 1Mi}]}\n", "certificates"},
		{"chart-owned config key", "sidecar: {config: {listen: 0.0.0.0:8411}}\n", "listen"},
		{"unknown config key", "sidecar: {config: {routess: []}}\n", "routess"},
		{"unknown route auth type", "sidecar: {config: {routes: [{name: a, upstream: 'https://a.example.com', auth: {type: basic}}]}}\n", "type"},
		{"unknown inbound rule key", "sidecar: {inbound: {rules: [{path: /, accept: [jwt], scope: read}]}}\n", "scope"},
		{"unknown inbound method", "sidecar: {inbound: {rules: [{path: /, accept: [basic]}]}}\n", "accept"},
		{"inbound rule without accept", "sidecar: {inbound: {rules: [{path: /}]}}\n", "accept"},
		{"unknown route key", "sidecar: {config: {routes: [{name: a, upstream: 'https://a.example.com', auth: {type: none}, timeout: 3}]}}\n", "timeout"},
		{"upstream without scheme", "sidecar: {config: {routes: [{name: a, upstream: a.example.com, auth: {type: none}}]}}\n", "upstream"},
		{"resolve rule with a port", "sidecar: {config: {resolve: ['a.example.com=127.0.0.1:443']}}\n", "resolve"},
		{"resolve rule with a host name", "sidecar: {config: {resolve: ['a.example.com=localhost']}}\n", "resolve"},
		{"bad duration", "sidecar: {config: {drain_timeout: 20}}\n", "drain_timeout"},
		{"bad digest", "sidecar: {image: {digest: latest}}\n", "digest"},
		{"probe handler is the chart's", "sidecar: {probes: {liveness: {httpGet: {path: /}}}}\n", "httpGet"},
	}
	c := loadChart(t)
	expectSchemaRefuses(t, c, cases)
}

// TestTemplateRejectsDuplicateNames: what the schema cannot express (unique
// names, one pod per one-time pairing token), the templates check.
func TestTemplateRejectsDuplicateNames(t *testing.T) {
	g := NewWithT(t)
	c := loadChart(t)
	_, err := renderChart(t, c, "sidecar: {bindings: [{name: a, secretName: s1}, {name: a, secretName: s2}]}\n")
	g.Expect(err).To(MatchError(ContainSubstring(`sidecar.bindings: the name "a" appears twice`)))
	_, err = renderChart(t, c, "sidecar: {certificates: [{name: c, existingSecret: s}, {name: c, binding: b}]}\n")
	g.Expect(err).To(MatchError(ContainSubstring(`sidecar.certificates: the name "c" appears twice`)))

	// References to certificates must name a declared one.
	_, err = renderChart(t, c, "sidecar: {config: {routes: [{name: e, upstream: 'https://e.example.com', auth: {type: mtls, certificate: nope}}]}}\n")
	g.Expect(err).To(MatchError(ContainSubstring(`certificate "nope" is not in sidecar.certificates`)))
	_, err = renderChart(t, c, "sidecar: {inbound: {enabled: true, tlsCertificate: server}}\n")
	g.Expect(err).To(MatchError(ContainSubstring(`sidecar.inbound.tlsCertificate: "server" is not in sidecar.certificates`)))

	// A one-time pairing token serves one pod only.
	_, err = renderChart(t, c, "workload: {replicas: 2}\nsidecar: {certificates: [{name: c, pairing: {secretName: p}}]}\n")
	g.Expect(err).To(MatchError(ContainSubstring("only one pod can use")))
	_, err = renderChart(t, c, "workload: {replicas: 2}\nsidecar: {certificates: [{name: c, existingSecret: s}]}\n")
	g.Expect(err).NotTo(HaveOccurred())
}

// TestNativeModeNeedsANewEnoughCluster: restartable init containers exist
// from Kubernetes 1.28; older clusters get a message pointing at classic mode.
func TestNativeModeNeedsANewEnoughCluster(t *testing.T) {
	g := NewWithT(t)
	c := loadChart(t)
	_, err := renderChartFor(t, "v1.27.9", c, "")
	g.Expect(err).To(MatchError(ContainSubstring("set sidecar.mode=classic")))
	files, err := renderChartFor(t, "v1.27.9", c, "sidecar: {mode: classic}\n")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = decodeStrict(files)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = renderChartFor(t, "v1.28.3", c, "")
	g.Expect(err).NotTo(HaveOccurred())
}

// TestStrictDecodingCatchesBadManifests proves the decoder the other tests rely
// on does fail: an unknown field, a mistyped field and an unknown kind.
func TestStrictDecodingCatchesBadManifests(t *testing.T) {
	g := NewWithT(t)
	base := mustRender(t, ``)
	var depl string
	for name, content := range base.files {
		if strings.HasSuffix(name, "deployment.yaml") {
			depl = content
		}
	}
	g.Expect(depl).To(ContainSubstring("restartPolicy: Always"))
	for name, bad := range map[string]string{
		"unknown field":  strings.Replace(depl, "restartPolicy: Always", "restartPolicy: Always\n          restartPolice: Always", 1),
		"mistyped field": strings.Replace(depl, "replicas: 1", "replicas: \"one\"", 1),
		"duplicate key":  strings.Replace(depl, "replicas: 1", "replicas: 1\n  replicas: 2", 1),
		"unknown kind":   strings.Replace(depl, "kind: Deployment", "kind: Deploymentt", 1),
	} {
		g.Expect(bad).NotTo(Equal(depl), name)
		_, err := decodeStrict(map[string]string{"credbroker/templates/deployment.yaml": bad})
		g.Expect(err).To(HaveOccurred(), name)
	}
}
