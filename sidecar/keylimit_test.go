package sidecar

import (
	"fmt"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/credbroker/credbroker/internal/testpki"
)

// A token source refusing a new key (max_token_keys) makes the route and the
// token API answer 429 token-key-limit, counted by binding, with nothing
// sent upstream; the token API hands its scope set to the source per
// request instead of preparing a source per scope set.
func TestTokenKeyLimitAnswers429(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tokens := &fakeTokens{}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
token_api: {bindings: [b]}
routes:
  - {name: orders, upstream: %s, auth: {type: bearer, binding: b, tenant_header: X-Tenant}}
`, up.url), Deps{Tokens: tokens})

	for i := range 5 {
		resp, _ := do(t, "GET", fmt.Sprintf("%s%s?binding=b&scope=junk%d", tp.srv.URL, TokenAPIPath, i), nil, nil)
		g.Expect(resp.StatusCode).To(Equal(200))
	}
	g.Expect(tokens.sources).To(HaveLen(2), "one source for the route, one for the token API: scope sets do not add sources")
	g.Expect(tokens.calls()[len(tokens.calls())-1].Scopes).To(Equal([]string{"junk4"}))

	tokens.setErr(fmt.Errorf("%w: tokenclient: too many keys", ErrTokenKeyLimit))
	resp, body := do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=b&scope=junk9", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonTokenKeyLimit))
	g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
	g.Expect(body).To(ContainSubstring("max_token_keys"))

	resp, _ = do(t, "GET", tp.srv.URL+"/orders/x", nil, map[string]string{"X-Tenant": "junk-tenant"})
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonTokenKeyLimit))
	g.Expect(up.seen).To(BeEmpty(), "nothing went upstream")

	g.Expect(testutil.ToFloat64(tp.metrics.keyLimit.WithLabelValues("b", "token_api"))).To(BeNumerically("==", 1))
	g.Expect(testutil.ToFloat64(tp.metrics.keyLimit.WithLabelValues("b", "route"))).To(BeNumerically("==", 1))
}
