package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/sidecar"
)

// The demo's destinations (in the mock's Destination service, provider
// tenant): one on the Internet, one on premise behind the mock
// Connectivity proxy.
const (
	demoInternetDestination = "s4-cloud"
	demoOnPremDestination   = "erp-onprem"
)

func seedDemoDestinations(m *mockauth.Server) error {
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	for _, d := range []mockauth.Destination{
		{Tenant: "provider", Properties: map[string]string{"Name": demoInternetDestination, "URL": m.BackendURL() + "/sap/opu/odata",
			"Authentication": "OAuth2ClientCredentials", "sap-client": "100"}},
		{Tenant: "provider", Properties: map[string]string{"Name": demoOnPremDestination, "URL": "http://erp.virtual:8000/sap",
			"Authentication": "BasicAuthentication", "ProxyType": "OnPremise", "CloudConnectorLocationId": "demo-location",
			"User": "demo-user", "Password": hex.EncodeToString(pw)}},
	} {
		if err := m.SeedDestination(d); err != nil {
			return err
		}
	}
	return nil
}

// demoDestinationRoutes are the routes of the two destinations.
const demoDestinationRoutes = `  - name: s4
    auth: {type: destination, destination: ` + demoInternetDestination + `, binding: destination, tenant_header: X-Tenant}
  - name: erp
    auth: {type: destination, destination: ` + demoOnPremDestination + `, binding: destination, connectivity: connectivity, tenant_header: X-Tenant}
`

// demoDestinationCalls calls both destination routes and prints what the
// backends received (credentials by description only).
func demoDestinationCalls(ctx context.Context, w io.Writer, proxy string) int {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	failed := 0
	for _, c := range []struct{ label, path string }{
		{"destination (Internet)  GET /s4/A_BusinessPartner", "/s4/A_BusinessPartner"},
		{"destination (OnPremise) GET /erp/orders", "/erp/orders"},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, proxy+c.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			failed++
			fmt.Fprintf(w, "✗ %-34s %v\n", c.label, err)
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		var seen mockauth.Seen
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &seen) != nil {
			failed++
			fmt.Fprintf(w, "✗ %-34s %d %s %s\n", c.label, resp.StatusCode, resp.Header.Get(sidecar.HeaderError), strings.TrimSpace(string(data)))
			continue
		}
		target := seen.Path
		if seen.Query != "" {
			target += "?" + seen.Query
		}
		fmt.Fprintf(w, "✓ %-34s %s backend got %s %s\n", c.label, seen.Via, seen.Method, target)
		fmt.Fprintf(w, "    credential: %s", seen.Credential)
		if seen.Via == "onpremise" {
			fmt.Fprintf(w, " (through the Connectivity proxy, location %s, virtual host %s)", seen.LocationID, seen.Host)
		}
		fmt.Fprintln(w)
	}
	return failed
}
