// Package guard is credbroker's inbound guard: an http.Handler in front of
// the application that forwards a request only when it carries a valid
// XSUAA/IAS JWT of a bound instance, a client certificate from a trusted CA,
// or a valid 0-legged OAuth 1.0a signature, and tells the application who
// called in headers it sets itself.
package guard
