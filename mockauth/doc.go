// Package mockauth is a mock XSUAA-style token service (with an IAS flavour)
// and a Kyma-style Application Connector with its own CAs, for end-to-end
// tests. Start it inside a test like httptest:
//
//	srv, err := mockauth.Start(mockauth.Options{TokenTTL: time.Minute})
//	if err != nil { ... }
//	defer srv.Close()
//	info := srv.Info()              // every URL: info.URL, info.CertURL, info.ConnectorURL, info.AdminURL, ...
//	vcap := srv.VCAPServices()      // VCAP_SERVICES with "xsuaa-secret", "xsuaa-x509" and "ias" bindings
//	client := srv.Client()          // trusts the mock's CA, dials *.localhost to loopback
//	url, token, err := srv.NewPairingToken("app1") // one-time connector token
//
// # Hosts
//
// Every host name lives under .localhost (RFC 6761) so that tenant
// subdomains work on one machine. Go does not resolve those names by itself:
// dial through [DialContext] (or an override with the addresses of
// [Server.HostAddrs]). TLS still verifies the name against the mock's
// server CA ([Server.CACertPEM]).
//
// Each listener takes a random port of Options.Host by default. With
// Options.Port443 the HTTPS listeners take port 443 of one loopback address
// per role (127.0.0.2-6, [Port443Addr]) and the URLs carry no port, as the
// real services' do; it needs root or CAP_NET_BIND_SERVICE and one such mock
// per machine at a time.
//
//   - Token service, client secret: https://<subdomain>.authentication.localhost:PORT
//     (POST /oauth/token, GET /token_keys; IAS: POST /oauth2/token,
//     GET /oauth2/certs, GET /.well-known/openid-configuration). The
//     tenant-agnostic host authentication.localhost takes the zone in X-zid.
//   - Token service, mTLS: https://<subdomain>.authentication.cert.localhost:PORT2;
//     a TLS handshake without a client certificate from a trusted CA fails.
//   - Connector (one-time token calls): https://connector.localhost:PORT3, and
//     with Options.TwoPhase a runtime connector with its own CA.
//   - Gateway (App Registry metadata and events, and the connector's mTLS
//     calls: management info, renewal, revocation): https://gateway.localhost:PORT4.
//   - Control API (plain HTTP on loopback): http://127.0.0.1:PORT5/mock/...
//
// # Grants and users
//
// client_credentials, password, urn:ietf:params:oauth:grant-type:jwt-bearer
// (the assertion must be a user token the mock issued) and refresh_token.
// The password grant knows two fixed users: alice/alice-password (roles
// read and write) and bob/bob-password (role read); see [Users].
//
// # Conformance with the Kyma connector
//
// By default the connector behaves like the Kyma application
// connector-service (read from the source of Kyma 2.2.0 and 1.24.0);
// TestConformsToTheKymaConnector has one case per row:
//
//	topic                                  mock (as Kyma)                                  rule behind it
//	ECDSA CSR                              500 "Error while creating certificate: x509:    RSA CA; the template copies the CSR's
//	                                       requested SignatureAlgorithm does not match     signature algorithm
//	                                       private key type"
//	management info / metadata, revoked    200                                             the revocation list is checked on
//	                                                                                       renewal only (403 "Certificate has
//	                                                                                       been revoked.")
//	host of infoUrl, renewCertUrl,         the mTLS gateway host, not the connector        served behind Kyma's mTLS gateway
//	revokeCertUrl
//	management info, no client cert        TLS alert "certificate required"                the gateway requires one in the handshake
//	standalone clientIdentity              {"application": app}                            no cluster context
//	serial                                 2, always                                       a constant in the template
//	notBefore                              the second of issue                             time.Now(), no backdating
//	revocation identifies by               SHA-256 of the DER                              X-Forwarded-Client-Cert Hash=
//	token used, unknown, expired / missing 403 "Invalid token." / "Token not provided."    used and expired tokens are forgotten
//	CSR subject mismatch                   400 per attribute: "CSR: Invalid common name    CN, C, O, OU, L, ST, one at a time
//	                                       provided.", "CSR: No country provided.", ...
//	body not JSON (bad base64, PEM, CSR)   500 "Error while unmarshalling request body:    those errors map to 500
//	                                       ..."
//	revocation answer                      201, application/json;charset=UTF-8, no body    Respond(w, 201) sets only the header
//	CA                                     RSA 2048
//
// credbroker's extensions are explicit options: [Options.TwoPhase]
// (runtime.tokenUrl; the central identity then names group and tenant),
// [Options.ECDSAConnectorCA], [Options.StrictRevocation],
// [Options.UniqueSerials] and [Options.ResourceServer] (an upstream on
// https://api.localhost:PORT that validates the mock's tokens: 401 with
// WWW-Authenticate: Bearer error="invalid_token" for a revoked, expired or
// unknown token, 403 or 401 to everything when told to).
//
// # Breaking it on purpose
//
// [Server.AddFault] injects status codes (with Retry-After), latency,
// dropped connections or bodies for the next N requests or a time window;
// [Server.SetTTL], [Server.RotateKeys], [Server.RevokeSHA256] and
// [Server.MintToken] change what it issues; [Server.RevokeToken] and
// [Server.RevokeClientTokens] revoke access tokens (by jti, or every token
// of a client so far, through its rev_sig claim) and
// [Server.SetResourceMode] makes the resource server refuse everything; [Server.Stats] counts what it
// saw. The same controls exist over HTTP on Info().AdminURL.
//
// mockauth imports no production package of credbroker: a fake must not
// share code with what it tests.
package mockauth
