package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/sidecar/guard"
)

// events are the counters of refusals and credential events that are not
// on a per-request hot path: malformed request heads, token API refusals,
// the inbound guard's app errors and JWKS fetches. Every label value is a
// constant of this package or of guard, or a listener name.
type events struct {
	headRefused *prometheus.CounterVec
	apiRefused  *prometheus.CounterVec
	appErrors   prometheus.Counter
	jwks        *prometheus.CounterVec
}

func newEvents(reg *prometheus.Registry) events {
	e := events{
		headRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_request_head_refused_total",
			Help: "Connections closed with 400 because of a malformed request head, by listener (proxy, admin, inbound) and reason (obs-fold, bare-lf, bare-cr, bad-content-length).",
		}, []string{"listener", "reason"}),
		apiRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_api_refused_total",
			Help: "Requests to the token API answered with an error, by reason (not-a-route, bad-request, not-loopback, token-api-off, token-unavailable, token-key-limit, host-not-allowed, origin-refused, cross-site).",
		}, []string{"reason"}),
		appErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credbroker_inbound_app_unreachable_total",
			Help: "Requests the inbound guard accepted but could not pass to the app (502 app-unreachable).",
		}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_inbound_jwks_fetches_total",
			Help: "Fetches of JWKS verification keys by the inbound guard, by outcome (ok, error).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(e.headRefused, e.apiRefused, e.appErrors, e.jwks)
	return e
}

// AppUnreachable implements guard.EventObserver.
func (o inboundObserver) AppUnreachable() { o.m.appErrors.Inc() }

// JWKSFetched implements guard.EventObserver.
func (o inboundObserver) JWKSFetched(err error) { o.m.jwks.WithLabelValues(outcome(err)).Inc() }

var _ guard.EventObserver = inboundObserver{}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
