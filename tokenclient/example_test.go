package tokenclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/credbroker/credbroker/tokenclient"
)

// A token service that issues numbered tokens and refuses one scope.
func fakeTokenService() *httptest.Server {
	var n atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("scope") == "admin" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_scope","error_description":"Invalid scope: admin"}`)
			return
		}
		fmt.Fprintf(w, `{"access_token":"token-%d","token_type":"bearer","expires_in":3600,"scope":%q}`,
			n.Add(1), r.PostForm.Get("scope"))
	}))
}

func Example() {
	srv := fakeTokenService()
	defer srv.Close()

	c, err := tokenclient.New(tokenclient.Config{
		ClientID:     "sb-orders!t1",
		ClientSecret: "s3cr3t",
		TokenURL:     srv.URL, // plain http is accepted for loopback only
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx := context.Background()

	tok, err := c.Token(ctx, tokenclient.Request{Scopes: []string{"orders.read"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.AccessToken, tok.Scope, tok.ExpiresIn)

	again, _ := c.Token(ctx, tokenclient.Request{Scopes: []string{"orders.read"}})
	fmt.Println("cached:", again == tok)

	_, err = c.Token(ctx, tokenclient.Request{Scopes: []string{"admin"}})
	var te *tokenclient.TokenError
	if errors.As(err, &te) {
		fmt.Println(te.StatusCode, te.ErrorCode, te.Description)
	}
	// Output:
	// token-1 orders.read 1h0m0s
	// cached: true
	// 400 invalid_scope Invalid scope: admin
}
