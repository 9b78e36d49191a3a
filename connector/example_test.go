package connector_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/connector"
)

// Pair with a connector (here a scripted one on 127.0.0.1) and read the
// management info with the new certificate.
func Example() {
	fake := newFake() // https://connector.localhost:PORT with its own CA
	defer fake.Close()
	tokenURL, _ := fake.NewToken("orders")

	c, err := connector.New(
		connector.WithRootCAs(fake.CA.Pool()),
		connector.WithDialContext(loopbackDial()),
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
	// subject: O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=orders
	// application: orders
	// renewal and revocation known: true true
	// again: true
}
