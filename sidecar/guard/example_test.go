package guard_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/credbroker/credbroker/oauth1"
	"github.com/credbroker/credbroker/sidecar/guard"
)

// An app that trusts the guard's identity headers.
func Example() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s via %s", r.Header.Get(guard.HeaderSubject), r.Header.Get(guard.HeaderAuthMethod))
	}))
	defer app.Close()

	dir, _ := os.MkdirTemp("", "guard-example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "key"), []byte("controller-1\n"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cr3t\n"), 0o600)

	cfg := &guard.Config{
		Listen: "127.0.0.1:0",
		App:    app.URL,
		Rules: []guard.Rule{{
			Path: "/aps/", Accept: []guard.Method{guard.MethodOAuth1},
			OAuth1: &guard.OAuth1{KeyFile: filepath.Join(dir, "key"), SecretFile: filepath.Join(dir, "secret")},
		}},
	}
	g, err := guard.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	front := httptest.NewServer(g)
	defer front.Close()

	signer, _ := oauth1.NewSigner("controller-1", "s3cr3t")
	call := func(path string, sign bool) {
		req, _ := http.NewRequest("GET", front.URL+path, nil)
		req.Header.Set(guard.HeaderSubject, "admin") // spoofed: always removed
		if sign {
			_ = signer.Sign(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s %q\n", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	call("/aps/orders", true)
	call("/aps/orders", false)
	call("/admin", true)
	// Output:
	// 200  "hello controller-1 via oauth1"
	// 401 OAuth realm="credbroker" "credbroker: unauthorized (no_credentials)\n"
	// 403  "credbroker: forbidden (no_rule)\n"
}
