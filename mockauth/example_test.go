package mockauth_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/credbroker/credbroker/mockauth"
)

func Example() {
	srv, err := mockauth.Start(mockauth.Options{TokenTTL: 5 * time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	// The VCAP_SERVICES the mock hands out points at its own hosts.
	var vcap map[string][]struct {
		Name        string
		Credentials map[string]any
	}
	if err := json.Unmarshal(srv.VCAPServices(), &vcap); err != nil {
		fmt.Println(err)
		return
	}
	creds := vcap["xsuaa"][0].Credentials

	// A plain client that trusts the mock's CA and dials *.localhost to 127.0.0.1.
	resp, err := srv.Client().PostForm(creds["url"].(string)+"/oauth/token", url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {creds["clientid"].(string)},
		"client_secret": {creds["clientsecret"].(string)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var tok struct {
		TokenType string `json:"token_type"`
		ExpiresIn int    `json:"expires_in"`
		Scope     string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(vcap["xsuaa"][0].Name, resp.StatusCode, tok.TokenType, tok.ExpiresIn)
	fmt.Println(tok.Scope)
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// xsuaa-secret 200 bearer 300
	// xsuaa-secret!t1.read xsuaa-secret!t1.write uaa.resource
	// token requests: 1
}
