// Package broker is credbroker's composition: it turns a config file, the
// service bindings and the settings of `credbroker run` into the providers
// the sidecar serves with, and keeps their lifecycles running.
//
// For every configuration generation (the start, every reload) Load reads
// the config and the bindings and builds:
//
//   - trust and dialling, once (NewNetwork: the system roots plus ca_file,
//     and the resolve overrides), shared by every client of the generation
//     and handed to the proxy as Deps.Network;
//   - a token client per binding (tokenclient), adapted to sidecar's
//     TokenSource;
//   - a live certificate per certificates entry (certwatch): paired at start
//     when its directory holds no valid pair (Pair), the second phase paired
//     with the runtime connector's token URL, renewed through the connector,
//     heartbeated on its info endpoint, connection.json kept current;
//   - OAuth 1.0a signers (oauth1) and the inbound guard (sidecar/guard).
//
// Token clients and certificate lifecycles are shared between generations
// whose inputs did not change — a reload keeps the token cache and never
// pairs or renews twice — and closed when the last generation holding them
// is released.
//
// Pair is the one pairing of credbroker: `credbroker pair` and pairing at
// start both call it. NewNetwork is the one way every command builds its
// trust roots.
//
// Usage (what `credbroker run` does):
//
//	b, err := broker.New(broker.Options{ConfigFile: "/etc/credbroker/config.yaml",
//		Bindings: vcap.Sources{VCAPServices: os.Getenv("VCAP_SERVICES")}},
//		broker.WithLogger(log))
//	if err != nil { … }
//	defer b.Close()
//	err = b.Run(ctx, reload) // serves until ctx ends; a value on reload re-reads everything
//
// Errors that are bad configuration match ErrConfig (or are a
// *sidecar.ConfigError or *vcap.Error); anything else is a runtime failure.
// The broker logs only through the logger it is given and never logs a
// secret, key or one-time token.
package broker
