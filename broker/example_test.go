package broker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/mockauth"
)

// A broker loads one configuration generation: the sidecar calls Load at
// start and on every reload, and the generation's Close when it is replaced.
func Example() {
	b, err := broker.New(broker.Options{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	cfg, deps, err := b.Load(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer deps.Close()
	fmt.Println("proxy on", cfg.Listen, "with", len(cfg.Routes), "routes;", "system roots:", deps.Network.RootCAs() == nil)
	// Output: proxy on 127.0.0.1:0 with 0 routes; system roots: true
}

// Pair redeems a connector's one-time token URL and writes the pair and
// connection.json, as `credbroker pair` does.
func ExamplePair() {
	mock, err := mockauth.Start(mockauth.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mock.Close()
	dir, _ := os.MkdirTemp("", "broker-example-")
	defer os.RemoveAll(dir)
	caFile := filepath.Join(dir, "mock-ca.crt")
	_ = os.WriteFile(caFile, mock.CACertPEM(), 0o600)
	tokenURL, _, _ := mock.NewPairingToken("orders")

	n, err := broker.NewNetwork(caFile, nil) // the system roots plus the mock's CA
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := broker.Pair(context.Background(), broker.PairRequest{TokenURL: tokenURL, Dir: filepath.Join(dir, "connector")}, n, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("paired:", conn.Pairing.Leaf().Subject.CommonName, conn.Identity.Application)
	_, err = os.Stat(filepath.Join(dir, "connector", "tls.key"))
	fmt.Println("key written:", err == nil)
	// Output:
	// paired: orders orders
	// key written: true
}
