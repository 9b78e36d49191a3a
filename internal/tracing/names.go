package tracing

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

var noopProvider trace.TracerProvider = noop.NewTracerProvider()

// Span names. Every span credbroker makes has one of these names; none
// carries a caller-controlled value.
const (
	SpanProxy      = "credbroker.proxy"       // one proxied request (server kind)
	SpanTokenFetch = "credbroker.token.fetch" // one token fetch with its retries (client kind)
	SpanRenew      = "credbroker.certificate.renew"
	SpanPair       = "credbroker.connector.pair"
	SpanHeartbeat  = "credbroker.connector.heartbeat"
	SpanJWKSFetch  = "credbroker.guard.jwks_fetch"
	SpanGuard      = "credbroker.guard" // one inbound request's decision (server kind)
)

// Attribute keys. Values are constants of credbroker, names from the
// configuration, HTTP status codes or counts: never a header value, a
// query string, a token, a secret or an identity of a caller.
const (
	AttrRoute       = attribute.Key("credbroker.route")
	AttrAuth        = attribute.Key("credbroker.auth")
	AttrReason      = attribute.Key("credbroker.refusal_reason")
	AttrMethod      = attribute.Key("http.request.method")
	AttrStatus      = attribute.Key("http.response.status_code")
	AttrServerAddr  = attribute.Key("server.address")
	AttrServerPort  = attribute.Key("server.port")
	AttrGrant       = attribute.Key("credbroker.token.grant")
	AttrFetchReason = attribute.Key("credbroker.token.fetch_reason")
	AttrAttempts    = attribute.Key("credbroker.token.attempts")
	AttrErrorType   = attribute.Key("error.type")
	AttrCertificate = attribute.Key("credbroker.certificate")
	AttrRule        = attribute.Key("credbroker.guard.rule")
	AttrAccepted    = attribute.Key("credbroker.guard.accepted")
	AttrLinkKind    = attribute.Key("credbroker.link")
)

// LinkJoinedFetch marks the link from a request that waited for a token
// fetch another request started (the same single-flight).
const LinkJoinedFetch = "joined-token-fetch"

// Method bounds an HTTP method for an attribute: the registered methods
// as they are, anything else "_OTHER" (as the HTTP semantic conventions
// say).
func Method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "_OTHER"
}
