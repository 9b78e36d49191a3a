// Package connector is a client of the connector REST protocol (compatible
// with Kyma's Application Connector): pairing with a one-time token,
// management info, renewal and revocation over mutual TLS, a heartbeat, and
// the connection.json format that remembers a connection.
//
// Pairing redeems a one-time token URL, sends a CSR whose subject equals the
// announced subject exactly (in its order) and verifies what comes back:
//
//	c, err := connector.New(
//		connector.WithRootCAs(connectorCAs),            // trust for the connector's server certificate
//		connector.WithDialContext(resolver.Dialer(nil)), // optional
//	)
//	conn, err := c.Connect(ctx, tokenURL) // Pair + management info with the new certificate
//	switch {
//	case errors.Is(err, connector.ErrTokenInvalid):
//		// invalid, used or expired: a new one-time token is needed
//	case err != nil:
//		// network failure or *connector.Error from the connector
//	}
//	// conn.Pairing.KeyPEM, ChainPEM, CAPEM; conn.ConnectionInfo.Marshal() for connection.json
//
// mTLS calls present the certificate of a GetClientCertificate hook, so the
// certificate a watcher keeps current is used on the next handshake:
//
//	c, _ := connector.New(connector.WithRootCAs(cas), connector.WithGetClientCertificate(watcher.GetClientCertificate))
//	info, err := c.Info(ctx, ci.InfoURL)       // identity, URLs, runtime.tokenUrl
//	r, _ := connector.NewRenewer(c, ci.RenewCertURL)
//	certPEM, keyPEM, caPEM, err := r.Renew(ctx, current) // what certwatch calls
//	hb, _ := connector.NewHeartbeat(c, ci.InfoURL, connector.OnChange(persist))
//	go hb.Run(ctx)
//
// One-time tokens travel in URL queries. This package never puts a query in
// an error or a log line (see RedactURL), never follows redirects, and never
// resends a request carrying a one-time token once the connector may have
// received it: failures before the request was written are retried with
// bounded backoff, anything later is returned (ErrTokenMaybeUsed).
package connector
