// Package tokenclient is an OAuth 2.0 token client for XSUAA and IAS style
// token services: it turns a service binding's credentials into access
// tokens, for every grant and tenant, and keeps returning a valid one while
// the token service has a bad minute.
//
// A Client holds one OAuth client (one binding). Secret clients post to the
// binding's url with the secret as form fields (or HTTP Basic); X.509
// clients post to its certurl and present the certificate that
// Config.GetClientCertificate returns at each handshake, so a rotated
// certificate is used on the next fetch with nothing rebuilt:
//
//	c, err := tokenclient.New(tokenclient.Config{
//		ClientID:     creds.ClientID,
//		ClientSecret: tokenclient.Secret(creds.ClientSecret), // prints as [redacted]
//		TokenURL:     creds.URL,                              // https://provider.authentication.example.com
//		UAADomain:    creds.UAADomain,                        // for tenants by zone id
//	}, tokenclient.WithLogger(log), tokenclient.WithObserver(metrics))
//	if err != nil { ... }                                    // errors.Is(err, tokenclient.ErrInvalidConfig)
//	defer c.Close()
//
//	tok, err := c.Token(ctx, tokenclient.Request{Scopes: []string{"orders.read"}, Tenant: "subscriber-1"})
//	var te *tokenclient.TokenError
//	switch {
//	case errors.As(err, &te):                               // the service said no: te.StatusCode, te.ErrorCode, te.Description
//	case errors.Is(err, tokenclient.ErrUnavailable):         // unreachable, 5xx or 429 beyond the retry budget
//	}
//
//	h, _ := c.Handle(tokenclient.Request{Scopes: []string{"orders.read"}}) // prepared once,
//	tok, err = h.Token(ctx)                                                   // a few ns per cache hit
//
//	httpClient := &http.Client{Transport: c.Transport(nil, req)} // sets Authorization: Bearer
//	ts := c.TokenSource(ctx, req)                                // an oauth2.TokenSource
//
// # Grants and tenants
//
// Request.Grant is client_credentials (the default), password,
// jwt-bearer (Assertion, the user token exchange) or refresh_token. A tenant
// is a subscriber subdomain (the first host label of the token URL is
// replaced; "authentication.cert." is kept for X.509) or a zone id (sent as
// X-zid to the tenant-agnostic UAADomain host, "authentication.cert." for
// X.509). Flavor IAS posts to /oauth2/token with HTTP Basic and understands
// Resource and AppTID.
//
// # Cache
//
// Tokens are cached per request identity: grant, sorted scopes, tenant or
// zone, user, IAS parameters, the certificate fingerprint when
// Config.CertificateFingerprint is set, and a SHA-256 digest of the
// grant's secret (password, assertion or refresh token) — never a secret
// itself. A token's expiry is expires_in, or the JWT's exp when that is
// earlier, or WithDefaultLifetime when neither is given; it is served until
// its expiry minus a skew (WithExpirySkew). Once WithRefreshAhead's share of
// that served time has passed (2/3 by default, with jitter), a token in use is
// refreshed in the background while callers keep getting it; callers block
// only when there is no valid token, and all callers of one key share one
// fetch. Fetches across keys are bounded (WithMaxConcurrentFetches), and so
// are the entries (WithMaxEntries: expired entries go first, then the least
// recently used by the CLOCK algorithm).
//
// The cache hit path reads the wall clock once and does not allocate:
// timers armed when a token arrives set its refresh and expiry flags, but
// they run on the monotonic clock, which stands still while a host is
// suspended, so the hit also compares the token's served time and refresh
// point with the wall clock. After a resume no token past its time is
// handed out, however long the suspend.
//
// # Failures
//
// Network errors, 408, 429 and 5xx are retried with full-jitter exponential
// backoff, honouring Retry-After, within WithRetry's bounds in attempts and
// time. A 4xx refusal is a *TokenError with the RFC 6749 fields and is
// replayed from a negative cache for WithNegativeCacheTTL so a wrong secret
// does not hammer the server. When a fetch fails because the service is
// unavailable (or answers garbage) and no valid token is left, callers get
// that failure for the retry policy's MaxDelay without a new fetch, so an
// outage is asked about once per pause, not once per waiting caller.
// Redirects are never followed. Every attempt
// has a timeout (WithTimeout). One transport per client keeps connections
// and TLS sessions across fetches; sessions are keyed by the client
// certificate, so a rotated certificate never resumes an old session.
//
// # Concurrency and lifecycle
//
// A Client is safe for concurrent use. Close stops refresh timers, cancels
// fetches in flight and waits for them; Token then returns ErrClosed.
// Nothing is logged unless WithLogger is given, and no log line, error or
// String method holds a secret, assertion or token.
package tokenclient
