// Package connector is a client of the connector REST protocol: pairing with
// a one-time token, management info, renewal and revocation.
package connector
