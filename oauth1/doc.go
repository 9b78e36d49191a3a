// Package oauth1 signs and verifies RFC 5849 0-legged OAuth 1.0a requests:
// HMAC-SHA1 with a consumer key and secret and an empty token, as a
// controller and its connectors use to authenticate each other.
//
// Signing (the egress side):
//
//	s, err := oauth1.NewSigner(key, secret)
//	req, _ := http.NewRequestWithContext(ctx, "POST", "https://controller.example.com/v1/x", body)
//	req.Header.Set("Content-Type", "application/json")
//	err = s.Sign(req) // sets Authorization: OAuth oauth_consumer_key="…", …, oauth_signature="…"
//
// Bodies that are not application/x-www-form-urlencoded are covered by
// oauth_body_hash = base64(SHA1(body)); form bodies by their parameters in the
// signature base string. The base string URI follows section 3.4.1.2:
// lower-case scheme and host, default ports dropped, no query.
//
// Verifying (the inbound side):
//
//	v, err := oauth1.NewVerifier(oauth1.StaticSecret(key, secret), oauth1.WithWindow(5*time.Minute))
//	res, err := v.VerifyRequest(r, oauth1.RequestURL(r, "https", "api.example.com"))
//	switch {
//	case errors.Is(err, oauth1.ErrReplay), errors.Is(err, oauth1.ErrStale): …
//	}
//
// The verifier recomputes the signature over the external URL the caller
// gives (what the client saw, not the address behind a proxy), compares in
// constant time, checks oauth_body_hash against the real body, the timestamp
// window and a bounded, time-evicted nonce cache. Errors wrap the sentinel
// ErrX values of errors.go and never contain a secret, a signature or a
// nonce. Signer and Verifier take an injected clock (WithClock) and are safe
// for concurrent use.
package oauth1
