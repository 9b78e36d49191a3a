package mockauth

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretsInLogs drives every secret-bearing call with a debug logger
// and checks that no secret, password, assertion, refresh, access or
// one-time token shows up in the log.
func TestNoSecretsInLogs(t *testing.T) {
	g := NewWithT(t)
	var logs lockedBuffer
	srv := startMock(t, Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := srv.Client()
	info := srv.Info()
	var leaks []string

	res := postForm(t, c, info.URL+"/oauth/token", passwordForm(srv, "alice", "alice-password"), nil)
	g.Expect(res.status).To(Equal(http.StatusOK))
	leaks = append(leaks, srv.ClientSecret(SecretClientID), "alice-password", res.body["access_token"].(string), res.body["refresh_token"].(string))
	bearer := ccForm(srv)
	bearer.Set("grant_type", GrantJWTBearer)
	bearer.Set("assertion", res.body["access_token"].(string))
	g.Expect(postForm(t, c, info.URL+"/oauth/token", bearer, nil).status).To(Equal(http.StatusOK))
	wrong := ccForm(srv)
	wrong.Set("client_secret", "planted-wrong-secret-0123456789")
	leaks = append(leaks, "planted-wrong-secret-0123456789")
	g.Expect(postForm(t, c, info.URL+"/oauth/token", wrong, nil).status).To(Equal(http.StatusUnauthorized))
	req := formRequest(t, info.IASURL+"/oauth2/token", url.Values{"grant_type": {GrantClientCredentials}}, nil)
	req.SetBasicAuth(IASClientID, srv.ClientSecret(IASClientID))
	g.Expect(do(t, c, req).status).To(Equal(http.StatusOK))
	leaks = append(leaks, srv.ClientSecret(IASClientID))

	tokenURL, token, err := srv.NewPairingToken("app1")
	g.Expect(err).NotTo(HaveOccurred())
	p := pair(t, srv, tokenURL, true)
	csrURL := p.info.body["csrUrl"].(string)
	leaks = append(leaks, token, csrURL[strings.Index(csrURL, "token=")+6:])
	g.Expect(getJSON(t, c, tokenURL).status).To(Equal(http.StatusForbidden))

	g.Expect(logs.String()).To(ContainSubstring("mockauth: request"), "the logger was used")
	for _, leak := range leaks {
		g.Expect(logs.String()).NotTo(ContainSubstring(leak))
		for _, r := range srv.Stats().LastRequests {
			g.Expect(r.Query + strings.Join(mapValues(r.Form), " ")).NotTo(ContainSubstring(leak))
		}
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
