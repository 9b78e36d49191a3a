package sidecar

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/credbroker/credbroker/internal/testpki"
)

// TestRequestTenantOneRule sends the same tenant headers to a bearer route
// and a destination route: both take the same tenant (lower-cased, the
// route's own when absent or empty) and refuse the same hostile values with
// the same answer, before any token or destination is asked for.
func TestRequestTenantOneRule(t *testing.T) {
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	u, _ := url.Parse(up.url)
	yaml := "routes:\n" +
		"  - {name: bear, upstream: '" + up.url + "', auth: {type: bearer, binding: b, tenant_header: X-Tenant, tenant: home}}\n" +
		"  - {name: dest, auth: {type: destination, destination: d, binding: dest, tenant_header: X-Tenant, tenant: home}}\n"
	for _, tc := range []struct {
		name   string
		values []string // nil: no header
		want   string   // the tenant; "" with refuse
		refuse bool
	}{
		{"absent", nil, "home", false},
		{"empty", []string{""}, "home", false},
		{"subdomain", []string{"acme-01"}, "acme-01", false},
		{"upper case", []string{"ACME"}, "acme", false},
		{"63 characters", []string{strings.Repeat("a", 63)}, strings.Repeat("a", 63), false},
		{"64 characters", []string{strings.Repeat("a", 64)}, "", true},
		{"dotted", []string{"acme.evil.example"}, "", true},
		{"slash", []string{"acme/../x"}, "", true},
		{"space", []string{"ac me"}, "", true},
		{"leading dash", []string{"-acme"}, "", true},
		{"trailing dash", []string{"acme-"}, "", true},
		{"percent", []string{"acme%2e"}, "", true},
		{"non-ASCII", []string{"acmé"}, "", true},
		{"two lines", []string{"acme", "other"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			toks := &fakeTokens{}
			fr := &fakeResolver{res: &ResolvedDestination{URL: u, Header: http.Header{}}}
			tp := newTestProxy(t, ca, yaml, Deps{Tokens: toks, Destinations: map[string]DestinationResolver{"dest": fr}})
			var bodies []string
			for _, route := range []string{"bear", "dest"} {
				req, _ := http.NewRequest("GET", tp.srv.URL+"/"+route+"/x", nil)
				if tc.values != nil {
					req.Header["X-Tenant"] = tc.values
				}
				resp, err := http.DefaultClient.Do(req)
				g.Expect(err).NotTo(HaveOccurred())
				b := new(strings.Builder)
				_, _ = io.Copy(b, resp.Body)
				resp.Body.Close()
				if tc.refuse {
					g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), route)
					g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonTenantInvalid), route)
					for _, v := range tc.values {
						g.Expect(b.String()).NotTo(ContainSubstring(v), "the value is not echoed")
					}
					bodies = append(bodies, strings.Replace(b.String(), "route "+route+":", "route R:", 1))
					continue
				}
				g.Expect(resp.StatusCode).To(Equal(http.StatusOK), route+": "+b.String())
				g.Expect(up.last(t).Header.Get("X-Tenant")).To(BeEmpty(), "removed before forwarding")
			}
			if tc.refuse {
				g.Expect(bodies[0]).To(Equal(bodies[1]), "one refusal")
				g.Expect(toks.calls()).To(BeEmpty(), "no token asked for")
				g.Expect(fr.reqs).To(BeEmpty(), "no destination asked for")
				g.Expect(testutil.ToFloat64(tp.metrics.refused.WithLabelValues(ReasonTenantInvalid))).To(Equal(2.0))
				return
			}
			calls := toks.calls()
			g.Expect(calls).To(HaveLen(1))
			g.Expect(calls[0].Req.Tenant).To(Equal(tc.want))
			g.Expect(fr.reqs).To(Equal([]DestinationRequest{{Tenant: tc.want}}))
		})
	}
}
