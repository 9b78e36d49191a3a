// Package sidecar composes bindings, tokens and certificates into the
// credbroker egress proxy, token API, inbound guard and admin endpoints.
package sidecar
