// Package certwatch owns a live client certificate: it loads it, validates
// it, serves it to every TLS client (and server) in the process, watches its
// directory for rotations done by someone else, renews it before it
// expires, and persists renewed pairs so that a crash never leaves a key
// that does not match its certificate.
//
// # Sources
//
// A Watcher reads its pair from a directory (WithDir) holding tls.crt (leaf
// first, then intermediates), tls.key and, optionally, ca.crt: the layout
// `credbroker pair` and Persist write, a Kubernetes TLS secret mount with
// its "..data" symlink, or plain files. Or it calls a LoaderFunc
// (WithLoader), for the certificate and key of an x509 service binding;
// the binding's rotation arrives as a new load. Keys may be PKCS#8 (RSA,
// ECDSA, Ed25519), PKCS#1 or SEC1; PEM whose newlines arrived as a literal
// backslash-n is accepted. A pair is used only when the key matches the
// leaf, the leaf is inside its validity window, and the chain verifies
// against ca.crt when there is one.
//
// # Usage
//
//	w, err := certwatch.New(ctx,
//		certwatch.WithDir("/var/run/credbroker/connector"),
//		certwatch.WithRenewer(renewer), // the connector client
//		certwatch.WithLogger(logger),
//	)
//	if err != nil {
//		return err // no usable pair: errors.Is(err, certwatch.ErrNoPair), ErrKeyMismatch, ErrExpired…
//	}
//	defer w.Close()
//	go w.Run(ctx) // watch, re-read, renew until ctx is done
//
//	tr := &http.Transport{TLSClientConfig: &tls.Config{
//		GetClientCertificate: w.GetClientCertificate, // the live pair, each handshake
//		RootCAs:              w.CertPool(),
//	}}
//
// GetClientCertificate, GetCertificate and CertPool read an atomic pointer:
// they never block and always return a whole, validated pair. Connections
// already open keep the certificate of their handshake; after Updated fires,
// CloseIdleConnections makes the next request handshake with the new one.
//
// # Rotation and renewal
//
// Run watches the directory (not the files, which a "..data" swap
// replaces) with fsnotify, waits for the debounce, re-reads it, and also
// re-reads it every poll interval in case an event was missed; a directory
// that does not exist yet is watched through its parent until it appears.
// (The watcher is the module's one, shared with the sidecar's configuration
// and the inbound guard's CA files.) A new pair
// that fails validation is refused and the live one kept; the error is
// logged, recorded in Status and sent to the Observer.
//
// With a Renewer, the certificate is renewed once two thirds of its
// validity have passed (Policy, with jitter); a failed attempt is retried
// with capped exponential backoff, faster in the last tenth of the
// validity, and never past expiry. Schedule is the pure function that
// decides. A renewed pair is validated, persisted to the directory
// (Persist), and only then made live. Expiry is never silent: it is logged
// at error level, sent as EventExpired, and Status().NeedsToken becomes
// true (as it does when the connector says the certificate is revoked).
//
// # Persisting
//
// Persist writes a pair (and extra files such as connection.json) into a
// directory the way the Kubernetes atomic writer does: a new generation
// directory, fsync of every file, then one rename of the "..data" symlink.
// The key is 0600. LoadDir reads it back.
package certwatch
