package tokenclient

import (
	"github.com/credbroker/credbroker/internal/netx"
	"net"
	"net/url"
	"strings"
)

// endpoint is where one token request goes.
type endpoint struct {
	url    string // the full token endpoint, never with credentials
	zoneID string // sent as X-zid when not empty
}

// buildEndpoint is the one place that decides the token endpoint for a
// tenant. base is the validated base URL (CertURL for X.509 clients).
//
//   - no tenant, no zone: base + token path.
//   - tenant (a subscriber subdomain): the first host label of base is
//     replaced, so https://provider.authentication.cert.example.com becomes
//     https://tenant.authentication.cert.example.com; the port is kept.
//   - zone id: the tenant-agnostic host (uaaDomain, or base without its first
//     label) with an X-zid header; for X.509 clients "authentication." in
//     uaaDomain becomes "authentication.cert.".
func buildEndpoint(base *url.URL, uaaDomain string, flavor Flavor, x509 bool, tenant, zone string) (endpoint, error) {
	u := *base
	u.Path = base.Path + flavor.path()
	switch {
	case tenant != "" && zone != "":
		return endpoint{}, requestErr("Tenant and ZoneID are mutually exclusive")
	case tenant != "":
		if !netx.IsDNSLabel(tenant) {
			return endpoint{}, requestErr("Tenant %q is not a subdomain (letters, digits and '-', at most 63)", sanitize(tenant, 70))
		}
		host := base.Hostname()
		_, rest, ok := strings.Cut(host, ".")
		if !ok || rest == "" {
			return endpoint{}, requestErr("Tenant: host %q has no label to replace", host)
		}
		u.Host = joinHostPort(strings.ToLower(tenant)+"."+rest, base.Port())
	case zone != "":
		if !isZoneID(zone) {
			return endpoint{}, requestErr("ZoneID %q has characters other than letters, digits, '-', '_' and '.'", sanitize(zone, 70))
		}
		host, port := zoneHost(base, uaaDomain, x509)
		if host == "" {
			return endpoint{}, requestErr("ZoneID: no tenant-agnostic host (UAADomain is empty and %q has one label)", base.Hostname())
		}
		u.Host = joinHostPort(host, port)
		return endpoint{url: u.String(), zoneID: zone}, nil
	}
	return endpoint{url: u.String()}, nil
}

func zoneHost(base *url.URL, uaaDomain string, x509 bool) (host, port string) {
	port = base.Port()
	d := strings.TrimSpace(uaaDomain)
	if i := strings.Index(d, "://"); i >= 0 {
		d = d[i+3:]
	}
	d = strings.TrimSuffix(d, "/")
	if h, p, err := net.SplitHostPort(d); err == nil {
		d, port = h, p
	}
	d = strings.ToLower(d)
	if d != "" {
		if !x509 {
			return d, port
		}
		if strings.HasPrefix(d, "authentication.cert.") {
			return d, port
		}
		if rest, ok := strings.CutPrefix(d, "authentication."); ok {
			return "authentication.cert." + rest, port
		}
	}
	// Without a usable uaadomain: the base host without its first label
	// (provider.authentication.cert.example.com -> authentication.cert.example.com).
	if _, rest, ok := strings.Cut(base.Hostname(), "."); ok && strings.Contains(rest, ".") || rest == "localhost" {
		return rest, port
	}
	return "", port
}

func joinHostPort(host, port string) string {
	if port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

func isZoneID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
