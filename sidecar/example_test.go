package sidecar_test

import (
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/sidecar"
)

func ExampleParseConfig() {
	cfg, err := sidecar.ParseConfig([]byte(`
routes:
  - name: orders
    upstream: https://orders.example.com
    auth: {type: bearer, binding: my-xsuaa, scopes: [orders.read], tenant_header: X-Tenant}
`), "config example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	r := cfg.Routes[0]
	fmt.Println(cfg.Listen, r.Name, r.Auth.Type, r.Auth.Grant, r.Auth.Replace())

	_, err = sidecar.ParseConfig([]byte("routes:\n  - {name: orders, auth: {type: mtls}}\n"), "config bad.yaml")
	fmt.Println(errors.Is(err, sidecar.ErrMissingValue))
	fmt.Println(err)
	// Output:
	// 127.0.0.1:8411 orders bearer client_credentials true
	// true
	// 2 problems in the configuration:
	//   sidecar: config bad.yaml line 2: routes[0].upstream ("orders"): missing value: a route needs an upstream URL
	//   sidecar: config bad.yaml line 2: routes[0].auth.certificate ("orders"): missing value: an mtls route needs a certificate (a name from certificates)
}
