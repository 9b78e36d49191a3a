package sidecar

import (
	"github.com/credbroker/credbroker/internal/netx"
	"net/http"
	"strings"
)

// ReasonTenantInvalid: the route's tenant_header carries something other
// than one subscriber subdomain (several values, or characters a DNS label
// does not have). Refused with 400 on every kind of route alike.
const ReasonTenantInvalid = "tenant-invalid"

// requestTenant is the one place where a route reads the tenant of a
// request, for bearer and destination routes alike. It removes the route's
// tenant_header (every copy) from req and returns the header's value,
// lower-cased, or the route's tenant when the header is absent or empty.
// A value that is not exactly one subscriber subdomain — letters, digits
// and '-', 1 to 63 characters, no '-' at either end; two or more header
// lines — is hostile input: the request is refused (400 tenant-invalid,
// counted in credbroker_proxy_refused_total) and ok is false. The value is
// never echoed.
func (r *route) requestTenant(w http.ResponseWriter, req *http.Request) (tenant string, ok bool) {
	tenant = r.tenant
	if r.tenantHdr == "" {
		return tenant, true
	}
	v, present := req.Header[r.tenantHdr]
	if !present {
		return tenant, true
	}
	delete(req.Header, r.tenantHdr)
	switch {
	case len(v) > 1:
		r.refuseTenant(w, "more than one "+r.tenantHdr+" header")
		return "", false
	case v[0] == "":
		return tenant, true
	case !netx.IsDNSLabel(v[0]):
		r.refuseTenant(w, r.tenantHdr+" is not a subscriber subdomain (letters, digits and '-', at most 63)")
		return "", false
	}
	return strings.ToLower(v[0]), true
}

func (r *route) refuseTenant(w http.ResponseWriter, msg string) {
	r.metrics.m.refused.WithLabelValues(ReasonTenantInvalid).Inc()
	r.metrics.count(http.StatusBadRequest)
	writeError(w, http.StatusBadRequest, ReasonTenantInvalid, "route "+r.name+": "+msg)
}
