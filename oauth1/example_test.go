package oauth1_test

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/credbroker/credbroker/oauth1"
)

func Example() {
	clock := func() time.Time { return time.Unix(1_800_000_000, 0) }
	signer, err := oauth1.NewSigner("connector-1", "s3cr3t",
		oauth1.WithClock(clock), oauth1.WithNonce(func() string { return "n-1" }))
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://Controller.Example.com:443/v1/events?x=1", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	if err := signer.Sign(req); err != nil {
		panic(err)
	}
	fmt.Println(req.Header.Get("Authorization"))

	verifier, err := oauth1.NewVerifier(oauth1.StaticSecret("connector-1", "s3cr3t"), oauth1.WithClock(clock))
	if err != nil {
		panic(err)
	}
	res, err := verifier.VerifyRequest(req, req.URL)
	fmt.Println(res.ConsumerKey, err)
	_, err = verifier.VerifyRequest(req, req.URL)
	fmt.Println(err)
	// Output:
	// OAuth oauth_consumer_key="connector-1", oauth_nonce="n-1", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1800000000", oauth_version="1.0", oauth_body_hash="n4nHQM60bXQYySSnisV5QdXpZSA%3D", oauth_signature="BEtExtNLs%2FB5n5Yi%2B6tli6m3kb8%3D"
	// connector-1 <nil>
	// oauth1: nonce already used
}
