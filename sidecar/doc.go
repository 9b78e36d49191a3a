// Package sidecar is credbroker's data plane: the egress proxy, the token
// API, the inbound guard's listener and the admin endpoints (`credbroker
// run`). It composes nothing itself: package broker builds the credential
// providers and hands them over through a Loader.
//
// The app calls http://127.0.0.1:8411/<route>/… (or uses the listener as its
// HTTP_PROXY with plain http:// URLs of a route's upstream host); the proxy
// adds the route's credential — a Bearer token, a TLS client certificate or
// an OAuth 1.0a signature — and forwards the request to the upstream over
// TLS. Anything that is not a route is refused with 403; when no valid
// credential can be had the proxy answers 503 with the reason in the
// X-Credbroker-Error header instead of forwarding a request that would fail.
//
// The core depends only on small interfaces declared here (TokenSource,
// Tokens, ClientCertificate, Signer, InboundHandler), so it is tested with
// fakes; package broker (the composition package, which `credbroker run`
// calls) adapts the real tokenclient, certwatch, connector, oauth1 and
// sidecar/guard packages to them and supplies Deps.Network, the trust roots
// and dial overrides it read once per configuration generation.
//
// Usage:
//
//	cfg, err := sidecar.ParseConfig(data, "config /etc/credbroker/config.yaml")
//	if err != nil { … }                       // *ConfigError: source, line, field
//	if err := cfg.Validate(lookup); err != nil { … }
//	srv := sidecar.NewServer(func(ctx context.Context) (*sidecar.Config, sidecar.Deps, error) {
//		return cfg, deps, nil              // called again on every reload
//	}, sidecar.WithLogger(log))
//	err = srv.Run(ctx)                        // serves until ctx is done, then drains
//
// The admin listener serves /healthz, /readyz (ready once every configured
// credential is available), /metrics (Prometheus, own registry) and /status
// (JSON per binding and certificate; nothing secret).
package sidecar
