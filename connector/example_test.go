package connector_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
)

// Pair with a connector (here mockauth's, on 127.0.0.1) and read the
// management info with the new certificate.
func Example() {
	mock, err := mockauth.Start(mockauth.Options{ECDSAConnectorCA: true})
	if err != nil {
		panic(err)
	}
	defer mock.Close()
	tokenURL, _, err := mock.NewPairingToken("orders")
	if err != nil {
		panic(err)
	}

	c, err := connector.New(
		connector.WithRootCAs(mock.CAPool()),
		connector.WithDialContext(mockauth.DialContext), // *.localhost on loopback
		connector.WithKeyType(connector.ECDSAP256),
	)
	if err != nil {
		panic(err)
	}
	conn, err := c.Connect(context.Background(), tokenURL)
	if err != nil {
		panic(err)
	}
	fmt.Println("subject:", conn.Pairing.Subject)
	fmt.Println("application:", conn.Identity.Application)
	fmt.Println("renewal and revocation known:", conn.RenewCertURL != "", conn.RevokeCertURL != "")

	// The token is single use.
	_, err = c.Connect(context.Background(), tokenURL)
	fmt.Println("again:", errors.Is(err, connector.ErrTokenInvalid))
	// Output:
	// subject: O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=orders
	// application: orders
	// renewal and revocation known: true true
	// again: true
}
