package charttest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test, relative to this package.
const chartDir = ".."

// kubeVersion is the cluster version the chart is rendered for (native
// sidecars are on by default from 1.29).
const kubeVersion = "v1.31.0"

const (
	releaseName = "shop"
	namespace   = "apps"
)

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	return c
}

func capabilities(t testing.TB, version string) *common.Capabilities {
	t.Helper()
	kv, err := common.ParseKubeVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps
}

// renderChart does what `helm template` does without a cluster: coalesce the
// values with the chart's defaults, validate them against values.schema.json
// and render every template in strict mode (a missing key is an error). It
// returns the rendered files by template path.
func renderChart(t testing.TB, c *chart.Chart, valuesYAML string) (map[string]string, error) {
	t.Helper()
	return renderChartFor(t, kubeVersion, c, valuesYAML)
}

// renderChartFor is renderChart for a given Kubernetes version.
func renderChartFor(t testing.TB, version string, c *chart.Chart, valuesYAML string) (map[string]string, error) {
	t.Helper()
	vals, err := common.ReadValues([]byte(valuesYAML))
	if err != nil {
		t.Fatalf("test values do not parse: %v\n%s", err, valuesYAML)
	}
	if err := chartutil.ProcessDependencies(c, vals); err != nil {
		return nil, err
	}
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := commonutil.ToRenderValues(c, vals, opts, capabilities(t, version))
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(c, rv)
}

// manifests is what one render produced, decoded strictly into the API types.
type manifests struct {
	files           map[string]string
	notes           string
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	serviceAccounts []*corev1.ServiceAccount
	secrets         []*corev1.Secret
	roles           []*rbacv1.Role
	roleBindings    []*rbacv1.RoleBinding
}

func (m *manifests) deployment(t testing.TB) *appsv1.Deployment {
	t.Helper()
	if len(m.deployments) != 1 {
		t.Fatalf("want exactly one Deployment, got %d", len(m.deployments))
	}
	return m.deployments[0]
}

func (m *manifests) configMap(t testing.TB) *corev1.ConfigMap {
	t.Helper()
	if len(m.configMaps) != 1 {
		t.Fatalf("want exactly one ConfigMap, got %d", len(m.configMaps))
	}
	return m.configMaps[0]
}

func (m *manifests) service(t testing.TB) *corev1.Service {
	t.Helper()
	if len(m.services) != 1 {
		t.Fatalf("want exactly one Service, got %d", len(m.services))
	}
	return m.services[0]
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes every YAML document of every rendered manifest into
// its Kubernetes API type: duplicate keys, unknown fields and mistyped values
// are errors, and so is a kind the chart is not expected to render.
func decodeStrict(files map[string]string) (*manifests, error) {
	m := &manifests{files: files}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		content := files[name]
		base := filepath.Base(name)
		if base == "NOTES.txt" {
			m.notes = content
			continue
		}
		if strings.HasPrefix(base, "_") || strings.TrimSpace(content) == "" {
			continue
		}
		for i, doc := range docSeparator.Split(content, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				return nil, fmt.Errorf("%s doc %d: %w", name, i, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				m.configMaps, obj = append(m.configMaps, c), c
			case "v1 ServiceAccount":
				s := &corev1.ServiceAccount{}
				m.serviceAccounts, obj = append(m.serviceAccounts, s), s
			case "v1 Secret":
				s := &corev1.Secret{}
				m.secrets, obj = append(m.secrets, s), s
			case "rbac.authorization.k8s.io/v1 Role":
				r := &rbacv1.Role{}
				m.roles, obj = append(m.roles, r), r
			case "rbac.authorization.k8s.io/v1 RoleBinding":
				r := &rbacv1.RoleBinding{}
				m.roleBindings, obj = append(m.roleBindings, r), r
			default:
				return nil, fmt.Errorf("%s doc %d: unexpected kind %q %q", name, i, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				return nil, fmt.Errorf("%s doc %d (%s): %w\n%s", name, i, meta.Kind, err, doc)
			}
		}
	}
	return m, nil
}

// mustRender renders valuesYAML and decodes the result strictly, failing the
// test on any error.
func mustRender(t testing.TB, valuesYAML string) *manifests {
	t.Helper()
	files, err := renderChart(t, loadChart(t), valuesYAML)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	m, err := decodeStrict(files)
	if err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	return m
}

// routesConfig is the credbroker config file of a ConfigMap, decoded
// generically for assertions.
func routesConfig(t testing.TB, cm *corev1.ConfigMap) map[string]any {
	t.Helper()
	raw, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(raw), &cfg); err != nil {
		t.Fatalf("config.yaml does not parse: %v\n%s", err, raw)
	}
	return cfg
}

// containerByName finds a container in a list.
func containerByName(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func volumeByName(vs []corev1.Volume, name string) *corev1.Volume {
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}

func mountAt(ms []corev1.VolumeMount, path string) *corev1.VolumeMount {
	for i := range ms {
		if ms[i].MountPath == path {
			return &ms[i]
		}
	}
	return nil
}

// joinDocs is for failure messages.
func joinDocs(files map[string]string) string {
	var b bytes.Buffer
	for name, content := range files {
		fmt.Fprintf(&b, "# %s\n%s\n", name, content)
	}
	return b.String()
}

// schemaCase is values the chart's schema refuses, with a word the
// refusal must name.
type schemaCase struct{ name, values, want string }

// expectSchemaRefuses renders each case and expects the schema's refusal
// naming its word.
func expectSchemaRefuses(t *testing.T, c *chart.Chart, cases []schemaCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := renderChart(t, c, tc.values)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("values don't meet the specifications of the schema"))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
		})
	}
}
