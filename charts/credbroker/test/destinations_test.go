package charttest

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestDestinationRoutesRenderIntoTheConfig: sidecar.destinations becomes
// destination routes after config.routes and the config's destinations
// block (cache settings and the Connectivity proxy override).
func TestDestinationRoutesRenderIntoTheConfig(t *testing.T) {
	g := NewWithT(t)
	m := mustRender(t, `
sidecar:
  config:
    routes:
      - {name: orders, upstream: "https://orders.example.com", auth: {type: bearer, binding: my-xsuaa}}
  destinations:
    routes:
      - {name: erp, destination: S4HANA, binding: my-destination, connectivity: my-connectivity, tenant_header: X-Tenant,
         user_token: X-User-Token, tenant_mode: subscriber-only, principal_exchange: my-xsuaa}
      - {name: web, destination: WEB, binding: my-destination, tenant: acme, allow_plain_http: true}
    connectivityProxy: {host: connectivity-proxy.other-ns.svc.cluster.local, port: 20004}
    cache: {ttl: 2m, skew: 10s, refresh_ahead: 30s, max_entries: 500}
`)
	cfg := routesConfig(t, m.configMap(t))
	g.Expect(cfg["routes"]).To(Equal([]any{
		map[string]any{"name": "orders", "upstream": "https://orders.example.com", "auth": map[string]any{"type": "bearer", "binding": "my-xsuaa"}},
		map[string]any{"name": "erp", "auth": map[string]any{"type": "destination", "destination": "S4HANA", "binding": "my-destination",
			"connectivity": "my-connectivity", "tenant_header": "X-Tenant", "user_token": "X-User-Token", "tenant_mode": "subscriber-only",
			"principal_exchange": "my-xsuaa"}},
		map[string]any{"name": "web", "allow_plain_http": true, "auth": map[string]any{"type": "destination", "destination": "WEB",
			"binding": "my-destination", "tenant": "acme"}},
	}))
	g.Expect(cfg["destinations"]).To(Equal(map[string]any{
		"ttl": "2m", "skew": "10s", "refresh_ahead": "30s", "max_entries": float64(500),
		"connectivity_proxy": "connectivity-proxy.other-ns.svc.cluster.local:20004",
	}))

	// Kyma's default proxy needs nothing: no host, no connectivity_proxy
	// (credbroker's default applies); no destination values, no block.
	m = mustRender(t, "sidecar:\n  destinations:\n    routes: [{name: erp, destination: S4HANA, binding: d, connectivity: c}]\n")
	cfg = routesConfig(t, m.configMap(t))
	g.Expect(cfg).NotTo(HaveKey("destinations"))
	g.Expect(cfg["routes"]).To(HaveLen(1))
	m = mustRender(t, "")
	g.Expect(routesConfig(t, m.configMap(t))).NotTo(HaveKey("destinations"))

	// An IPv6 proxy address is bracketed; the port defaults to 20003.
	m = mustRender(t, "sidecar:\n  destinations:\n    connectivityProxy: {host: 'fd00::1'}\n")
	g.Expect(routesConfig(t, m.configMap(t))["destinations"]).To(Equal(map[string]any{"connectivity_proxy": "[fd00::1]:20003"}))

	// A changed destination value rolls the pods.
	a := mustRender(t, "sidecar:\n  destinations:\n    cache: {ttl: 2m}\n")
	b := mustRender(t, "sidecar:\n  destinations:\n    cache: {ttl: 3m}\n")
	g.Expect(a.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]).
		NotTo(Equal(b.deployment(t).Spec.Template.Annotations["checksum/credbroker-config"]))
}

func TestDestinationValuesAreChecked(t *testing.T) {
	c := loadChart(t)
	expectSchemaRefuses(t, c, []schemaCase{
		{"unknown key", "sidecar: {destinations: {routes: [{name: a, destination: d, binding: b, upstream: 'https://x'}]}}\n", "upstream"},
		{"no binding", "sidecar: {destinations: {routes: [{name: a, destination: d}]}}\n", "binding"},
		{"no destination", "sidecar: {destinations: {routes: [{name: a, binding: b}]}}\n", "destination"},
		{"unknown tenant mode", "sidecar: {destinations: {routes: [{name: a, destination: d, binding: b, tenant_mode: both}]}}\n", "tenant_mode"},
		{"tenant not a subdomain", "sidecar: {destinations: {routes: [{name: a, destination: d, binding: b, tenant: a.b}]}}\n", "tenant"},
		{"proxy port out of range", "sidecar: {destinations: {connectivityProxy: {host: p, port: 70000}}}\n", "port"},
		{"proxy host with a port", "sidecar: {destinations: {connectivityProxy: {host: 'p.example:20003'}}}\n", "host"},
		{"bad ttl", "sidecar: {destinations: {cache: {ttl: 5}}}\n", "ttl"},
		{"unknown cache key", "sidecar: {destinations: {cache: {size: 5}}}\n", "size"},
		{"destinations under config (chart-owned)", "sidecar: {config: {destinations: {ttl: 1m}}}\n", "destinations"},
		{"destination type in config.routes", "sidecar: {config: {routes: [{name: a, upstream: 'https://a.example.com', auth: {type: destination}}]}}\n", "type"},
	})
	t.Run("a name in config.routes and destinations.routes", func(t *testing.T) {
		g := NewWithT(t)
		_, err := renderChart(t, c, "sidecar:\n  config: {routes: [{name: erp, upstream: 'https://a.example.com', auth: {type: none}}]}\n  destinations: {routes: [{name: erp, destination: d, binding: b}]}\n")
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring(`the name "erp" appears twice`))
		g.Expect(strings.Count(err.Error(), "erp")).To(BeNumerically(">=", 1))
	})
}
