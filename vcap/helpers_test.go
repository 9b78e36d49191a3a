package vcap

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
)

// testNow is the fixed clock of the table tests.
var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func clock() func() time.Time { return func() time.Time { return testNow } }

// vcapJSON builds VCAP_SERVICES JSON from bindings; each map must carry a
// "label" (used as the service key) and may carry "name", "plan",
// "credentials" and the other VCAP fields.
func vcapJSON(t testing.TB, bindings ...map[string]any) []byte {
	t.Helper()
	doc := map[string][]map[string]any{}
	for _, b := range bindings {
		l := b["label"].(string)
		doc[l] = append(doc[l], b)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xsuaa(name string, creds map[string]any) map[string]any {
	return map[string]any{"label": "xsuaa", "name": name, "plan": "application", "instance_name": name + "-inst", "tags": []string{"xsuaa"}, "credentials": creds}
}

func identity(name string, creds map[string]any) map[string]any {
	return map[string]any{"label": "identity", "name": name, "plan": "application", "credentials": creds}
}

// merge returns a copy of base with extra on top (a nil value deletes).
func merge(base map[string]any, extra map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return m
}

func baseXSUAACreds() map[string]any {
	return map[string]any{
		"clientid":     "sb-app!t1",
		"url":          "https://provider.authentication.eu10.hana.ondemand.com",
		"uaadomain":    "authentication.eu10.hana.ondemand.com",
		"xsappname":    "app!t1",
		"identityzone": "provider",
		"tenantid":     "tenant-guid",
	}
}

func baseIASCreds() map[string]any {
	return map[string]any{
		"clientid": "ias-client",
		"url":      "https://tenant.accounts.ondemand.com",
		"domains":  []string{"accounts.ondemand.com"},
		"app_tid":  "app-tid-guid",
	}
}

// pki holds the certificates of the credential-type tests, made once.
type pki struct {
	ca                       *testpki.CA
	valid, other, rsa, inter *testpki.Leaf
	expired, notYet          *testpki.Leaf
}

var testPKI = func() *pki {
	ca := testpki.NewCA()
	in := ca.NewIntermediate()
	nb, na := testNow.Add(-time.Hour), testNow.Add(7*24*time.Hour)
	return &pki{
		ca:      ca,
		valid:   ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("valid"), testpki.WithNotBeforeAfter(nb, na)),
		other:   ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("other"), testpki.WithNotBeforeAfter(nb, na)),
		rsa:     ca.Issue(testpki.ClientAuth(), testpki.WithKeyType(testpki.RSA2048), testpki.WithNotBeforeAfter(nb, na)),
		inter:   in.Issue(testpki.ClientAuth(), testpki.WithCommonName("chained"), testpki.WithNotBeforeAfter(nb, na)),
		expired: ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(testNow.Add(-10*24*time.Hour), testNow.Add(-3*24*time.Hour))),
		notYet:  ca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(testNow.Add(24*time.Hour), testNow.Add(8*24*time.Hour))),
	}
}()

// escaped renders PEM the way many bindings carry it: one line with literal \n.
func escaped(pem []byte) string { return strings.ReplaceAll(string(pem), "\n", `\n`) }

func mustSet(t testing.TB, data []byte, opts ...Option) *Set {
	t.Helper()
	s, err := ParseVCAP(data, SourceVCAPServices, append([]Option{WithClock(clock())}, opts...)...)
	if err != nil {
		t.Fatalf("ParseVCAP: %v", err)
	}
	return s
}

func only(t testing.TB, s *Set) *Binding {
	t.Helper()
	if s.Len() != 1 {
		t.Fatalf("want 1 binding, got %d", s.Len())
	}
	return s.Bindings[0]
}
