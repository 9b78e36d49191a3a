package mockauth

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkClientCredentials measures one client_credentials token over
// HTTPS (connections reused): what a suite pays per token it asks for.
func BenchmarkClientCredentials(b *testing.B) {
	srv, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c := srv.Client()
	body := url.Values{
		"grant_type":    {GrantClientCredentials},
		"client_id":     {SecretClientID},
		"client_secret": {srv.ClientSecret(SecretClientID)},
	}.Encode()
	u := srv.Info().URL + "/oauth/token"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
