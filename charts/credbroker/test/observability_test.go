package charttest

import (
	"testing"

	. "github.com/onsi/gomega"
)

// TestAccessLogAndTracingRenderIntoTheConfig: sidecar.accessLog becomes the
// config's access_log: block (standard output: no path), sidecar.tracing its
// tracing: block; neither is rendered while off, and a change rolls the
// pods.
func TestAccessLogAndTracingRenderIntoTheConfig(t *testing.T) {
	g := NewWithT(t)
	cfg := routesConfig(t, mustRender(t, "").configMap(t))
	g.Expect(cfg).NotTo(HaveKey("access_log"), "off by default")
	g.Expect(cfg).NotTo(HaveKey("tracing"), "off by default")

	m := mustRender(t, `
sidecar:
  accessLog: {enabled: true, format: text, sample: 0.25}
  tracing:
    endpoint: http://otel-collector.observability:4317
    protocol: grpc
    sampler: parentbased_traceidratio
    samplerArg: "0.01"
    serviceName: shop-credbroker
    resourceAttributes: {deployment.environment: prod}
`)
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg["access_log"]).To(Equal(map[string]any{"enabled": true, "format": "text", "sample": 0.25}))
	g.Expect(cfg["tracing"]).To(Equal(map[string]any{
		"endpoint": "http://otel-collector.observability:4317", "protocol": "grpc", "sampler": "parentbased_traceidratio",
		"sampler_arg": "0.01", "service_name": "shop-credbroker", "resource_attributes": map[string]any{"deployment.environment": "prod"},
	}))

	// The defaults of values.yaml: json, every request; an endpoint alone
	// takes the default protocol and sampler, and leaves out what is empty.
	cfg = routesConfig(t, mustRender(t, "sidecar:\n  accessLog: {enabled: true}\n  tracing: {endpoint: 'http://collector:4318'}\n").configMap(t))
	g.Expect(cfg["access_log"]).To(Equal(map[string]any{"enabled": true, "format": "json", "sample": float64(1)}))
	g.Expect(cfg["tracing"]).To(Equal(map[string]any{"endpoint": "http://collector:4318", "protocol": "http/protobuf", "sampler": "parentbased_always_on"}))

	// sample 0 (refusals only) is rendered, not dropped as empty.
	cfg = routesConfig(t, mustRender(t, "sidecar:\n  accessLog: {enabled: true, sample: 0}\n").configMap(t))
	g.Expect(cfg["access_log"]).To(HaveKeyWithValue("sample", float64(0)))

	a := mustRender(t, "sidecar:\n  accessLog: {enabled: true}\n")
	b := mustRender(t, "sidecar:\n  accessLog: {enabled: true, format: text}\n")
	g.Expect(a.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]).
		NotTo(Equal(b.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]))
}

func TestAccessLogAndTracingValuesAreChecked(t *testing.T) {
	c := loadChart(t)
	expectSchemaRefuses(t, c, []schemaCase{
		{"unknown format", "sidecar: {accessLog: {enabled: true, format: xml}}\n", "format"},
		{"sample above 1", "sidecar: {accessLog: {sample: 2}}\n", "sample"},
		{"negative sample", "sidecar: {accessLog: {sample: -0.5}}\n", "sample"},
		{"a file path (standard output only)", "sidecar: {accessLog: {enabled: true, path: /var/log/a.log}}\n", "path"},
		{"access_log under config (chart-owned)", "sidecar: {config: {access_log: {enabled: true}}}\n", "access_log"},
		{"tracing under config (chart-owned)", "sidecar: {config: {tracing: {endpoint: 'http://c:4318'}}}\n", "tracing"},
		{"endpoint with user info", "sidecar: {tracing: {endpoint: 'http://user:pw@collector:4318'}}\n", "endpoint"},
		{"endpoint with a query", "sidecar: {tracing: {endpoint: 'http://collector:4318/?key=1'}}\n", "endpoint"},
		{"endpoint without a scheme", "sidecar: {tracing: {endpoint: 'collector:4318'}}\n", "endpoint"},
		{"unknown protocol", "sidecar: {tracing: {protocol: http/json}}\n", "protocol"},
		{"unknown sampler", "sidecar: {tracing: {sampler: sometimes}}\n", "sampler"},
		{"ratio above 1", "sidecar: {tracing: {samplerArg: '1.5'}}\n", "samplerArg"},
		{"ratio as a number", "sidecar: {tracing: {samplerArg: 0.5}}\n", "samplerArg"},
		{"unknown tracing key", "sidecar: {tracing: {headers: {api-key: x}}}\n", "headers"},
	})
}
