package broker

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

const destVCAP = `{
  "destination": [{"name": "dest", "label": "destination", "plan": "lite", "credentials": {
    "uri": "https://destination-configuration.example", "clientid": "sb-dest", "clientsecret": "dest-secret-0001",
    "url": "https://provider.authentication.example", "uaadomain": "authentication.example"}}],
  "connectivity": [
    {"name": "conn-k8s", "label": "connectivity", "plan": "connectivity_proxy", "credentials": {
      "clientid": "sb-conn", "clientsecret": "conn-secret-0001", "token_service_url": "https://provider.authentication.example/oauth/token"}},
    {"name": "conn-cf", "label": "connectivity", "plan": "lite", "credentials": {
      "clientid": "sb-conn", "clientsecret": "conn-secret-0001", "url": "https://provider.authentication.example",
      "onpremise_proxy_host": "connectivityproxy.internal.example", "onpremise_proxy_http_port": "20003"}}]
}`

// TestDestinationResolverProxyAddress: the connectivity binding's proxy
// wins; a binding without one (Kubernetes) uses destinations.connectivity_proxy,
// else Kyma's in-cluster default.
func TestDestinationResolverProxyAddress(t *testing.T) {
	set, err := vcap.ParseVCAP([]byte(destVCAP), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ conn, configured, want string }{
		{"conn-cf", "", "connectivityproxy.internal.example:20003"},
		{"conn-cf", "other.example:1", "connectivityproxy.internal.example:20003"},
		{"conn-k8s", "", sidecar.DefaultConnectivityProxy},
		{"conn-k8s", "proxy.ns.svc:20003", "proxy.ns.svc:20003"},
	} {
		t.Run(tc.conn+tc.configured, func(t *testing.T) {
			g := NewWithT(t)
			cfg := &sidecar.Config{Destinations: sidecar.DestinationsConfig{ConnectivityProxy: tc.configured}}
			n, err := NewNetwork(cfg.CAFile, cfg.Resolve)
			g.Expect(err).NotTo(HaveOccurred())
			c, err := New(Options{})
			g.Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			gd := &genDeps{c: c, set: set, net: n}
			defer gd.release()
			r := sidecar.Route{Name: "r", Auth: sidecar.RouteAuth{Type: sidecar.AuthDestination, Destination: "d", Binding: "dest", Connectivity: tc.conn}}
			dr, err := gd.destinationResolver(cfg, r, map[string]destCache{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(dr.proxy.Host).To(Equal(tc.want))
		})
	}
	g := NewWithT(t)
	n, _ := NewNetwork("", nil)
	c, err := New(Options{})
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	gd := &genDeps{c: c, set: set, net: n}
	defer gd.release()
	_, err = gd.destinationResolver(&sidecar.Config{}, sidecar.Route{Name: "r", Auth: sidecar.RouteAuth{Type: sidecar.AuthDestination, Destination: "d", Binding: "conn-cf"}}, map[string]destCache{})
	g.Expect(err).To(MatchError(ContainSubstring("not a destination service binding")))
	g.Expect(err.Error()).NotTo(ContainSubstring("secret-0001"))
}
