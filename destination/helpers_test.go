package destination

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeService is an in-test Destination service: destinations by tenant
// ("" = provider) and name, the token each tenant's caller must present.
type fakeService struct {
	mu      sync.Mutex
	byName  map[string]map[string]map[string]any // tenant -> name -> answer
	status  int
	calls   atomic.Int64
	lastHdr http.Header
}

func newFakeService(t *testing.T) (*fakeService, *httptest.Server) {
	f := &fakeService{byName: map[string]map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lastHdr = r.Header.Clone()
		if f.status != 0 {
			w.WriteHeader(f.status)
			return
		}
		tenant := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer tok-")
		name := strings.TrimPrefix(r.URL.Path, "/destination-configuration/v1/destinations/")
		ans, ok := f.byName[tenant][name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"ErrorMessage":"Configuration with the specified name was not found"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeService) put(tenant, name string, ans map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byName[tenant] == nil {
		f.byName[tenant] = map[string]map[string]any{}
	}
	f.byName[tenant][name] = ans
}

func (f *fakeService) setStatus(s int) {
	f.mu.Lock()
	f.status = s
	f.mu.Unlock()
}

// tenantTokens hands out "tok-<tenant>".
var tenantTokens = TokenFunc(func(_ context.Context, tenant string) (Token, error) {
	return Token{Value: "tok-" + tenant, Expiry: time.Now().Add(time.Hour)}, nil
})

func answer(cfg map[string]any, tokens ...map[string]any) map[string]any {
	a := map[string]any{"owner": map[string]any{"SubaccountId": "sub-1", "InstanceId": nil}, "destinationConfiguration": cfg}
	if len(tokens) > 0 {
		a["authTokens"] = tokens
	}
	return a
}

func bearer(value string, expiresIn string) map[string]any {
	return map[string]any{"type": "bearer", "value": value, "http_header": map[string]any{"key": "Authorization", "value": "Bearer " + value}, "expires_in": expiresIn}
}

// jwt builds an unsigned JWT with the given claims (the cache does not
// check signatures).
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}
