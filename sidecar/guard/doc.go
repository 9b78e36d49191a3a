// Package guard is credbroker's inbound guard: an http.Handler in front of
// the application that forwards a request only when it carries a valid
// XSUAA/IAS JWT of a bound instance, a client certificate from a trusted CA,
// or a valid 0-legged OAuth 1.0a signature, and tells the application who
// called in headers it sets itself.
//
// The configuration is the inbound: section of the sidecar's YAML (Config,
// DESIGN.md "The inbound guard"). The first rule whose path prefix matches
// decides; a request matching no rule is refused with 403.
//
//	g, err := guard.New(cfg,
//		guard.WithBindings(lookup),                    // jwt rules: the bound xsuaa / IAS instances
//		guard.WithJWKSClient(client),                  // key fetches (dial override, CA pool)
//		guard.WithGetCertificate(watcher.GetCertificate), // tls: the server certificate
//		guard.WithLogger(log), guard.WithObserver(obs))
//	defer g.Close()
//	go g.Run(ctx)                                      // reloads CA bundles, CRLs, OAuth keys
//	srv := &http.Server{Addr: cfg.Listen, Handler: g, TLSConfig: g.TLSConfig()}
//
// Methods:
//   - jwt: RS256 only (alg none and HS256-with-the-public-key are refused);
//     the issuer must be the binding's uaadomain (XSUAA) or IAS host, keys
//     come from that host's token_keys (a jku only when it is under the
//     uaadomain) or /oauth2/certs, cached per kid, refreshed in the
//     background, an unknown kid refetches at most every
//     DefaultKeyMinInterval; exp/nbf with DefaultLeeway; the token's client
//     or audience must be the binding's clientid or xsappname; rule scopes
//     must all be present (XSUAA scopes prefixed by xsappname).
//   - mtls: the chain is verified per rule against ca_file (the listener
//     only requests a certificate, so jwt and mtls rules share it), then the
//     optional crl_file, subjects and sans. With an xfcc: block (XFCC) the
//     certificate may come from a trusted front proxy in
//     X-Forwarded-Client-Cert (Envoy or Cloud Foundry format) and goes
//     through the same checks; client-certificate headers never reach the
//     app.
//   - oauth1: package oauth1's verifier over the external URL, rebuilt from
//     X-Forwarded-Proto/-Host only when the peer is in trusted_proxies; the
//     body is buffered (WithMaxBody) and replayed to the app.
//
// Before anything else, every request header whose name folds to
// X-Credbroker-… (case-insensitive, any byte other than a letter or digit
// counted as "-", so X_Credbroker_Subject too) is removed, as are
// X-Client-Cert, X-Original-URL, X-Rewrite-URL and look-alikes of
// X-Forwarded-*; a Connection header naming a reserved header or
// Authorization, and a second Authorization header, are refused (400). The
// raw path must be canonical: no dot segment in any encoding, no "//", no
// backslash, no encoded "/" or ";", and ";" parameters only on a rule with
// allow_path_params (400 path_not_canonical). Rules match the decoded path
// case-sensitively. Accepted requests get X-Credbroker-Auth-Method,
// -Subject, -Client-Id, -Zone, -Tenant, -Scopes and -Cert-Subject as they
// apply, set after the hop-by-hop headers were removed.
//
// Refusals answer 401 with WWW-Authenticate (Bearer per RFC 6750, or OAuth
// with oauth_problem), 403 (no rule, insufficient scope, certificate not
// accepted), 400 (the checks above), 413 (body too large) or 503 (keys
// unavailable), always with the reason in X-Credbroker-Error (HeaderError);
// they are counted by an Observer and logged with a reason, never with the
// credential.
package guard
