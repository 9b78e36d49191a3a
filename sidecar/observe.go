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
	inBadBody   prometheus.Counter
	jwks        *prometheus.CounterVec

	// The access log's lines that were not written (accesslog.go).
	accessDropped prometheus.Counter
	// Credential events of the composition (broker): pairing at start,
	// heartbeats, certificate loads from disk, token failures replayed.
	pairings     *prometheus.CounterVec
	heartbeats   *prometheus.CounterVec
	certReloads  *prometheus.CounterVec
	tokenReplays *prometheus.CounterVec
}

func newEvents(reg *prometheus.Registry) events {
	e := events{
		headRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_request_head_refused_total",
			Help: "Connections closed because of a request head, by listener (proxy, admin, inbound) and reason: 400 for a malformed one (obs-fold, bare-lf, bare-cr, bad-content-length), 408 for one not complete within client_header_timeout of its first byte (header-timeout).",
		}, []string{"listener", "reason"}),
		apiRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_api_refused_total",
			Help: "Requests to the token API answered with an error, by reason (not-a-route, bad-request, not-loopback, token-api-off, token-unavailable, token-key-limit, host-not-allowed, origin-refused, cross-site).",
		}, []string{"reason"}),
		appErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credbroker_inbound_app_unreachable_total",
			Help: "Requests the inbound guard accepted but could not pass to the app (502 app-unreachable).",
		}),
		inBadBody: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credbroker_inbound_bad_request_body_total",
			Help: "Requests the inbound guard accepted but whose body could not be read on the way to the app (400 bad_request_body: a malformed chunk, a body cut short).",
		}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_inbound_jwks_fetches_total",
			Help: "Fetches of JWKS verification keys by the inbound guard, by outcome (ok, error).",
		}, []string{"outcome"}),
		accessDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credbroker_access_log_dropped_total",
			Help: "Access log lines dropped because the writer's queue was full (access_log.buffer) or writing failed.",
		}),
		pairings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_connector_pairings_total",
			Help: "Pairings with a one-time token at start (pairing_url_file, runtime_dir), by certificate and outcome (ok, error).",
		}, []string{"certificate", "outcome"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_connector_heartbeat_results_total",
			Help: "Heartbeats (management info calls) to the connector, by certificate and outcome (ok, error).",
		}, []string{"certificate", "outcome"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_certificate_reloads_total",
			Help: "Certificate files read from disk or a binding and swapped in (ok: at start and after every rotation) or refused (the current pair stays), by certificate.",
		}, []string{"certificate", "outcome"}),
		tokenReplays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_negative_cache_replays_total",
			Help: "Token requests answered with a cached failure instead of a new fetch, by binding and cause (refused: a 4xx of the auth server; unavailable: an outage, until the retry pause ends).",
		}, []string{"binding", "cause"}),
	}
	reg.MustRegister(e.headRefused, e.apiRefused, e.appErrors, e.inBadBody, e.jwks, e.accessDropped, e.pairings, e.heartbeats, e.certReloads, e.tokenReplays)
	return e
}

// Paired records one pairing with a one-time token at start.
func (m *Metrics) Paired(certificate string, err error) {
	m.pairings.WithLabelValues(certificate, outcome(err)).Inc()
}

// HeartbeatDone records one heartbeat to the connector.
func (m *Metrics) HeartbeatDone(certificate string, err error) {
	m.heartbeats.WithLabelValues(certificate, outcome(err)).Inc()
}

// CertificateReloaded records a certificate load: a new pair swapped in
// (err nil) or refused.
func (m *Metrics) CertificateReloaded(certificate string, err error) {
	o := "ok"
	if err != nil {
		o = "refused"
	}
	m.certReloads.WithLabelValues(certificate, o).Inc()
}

// TokenReplays returns the counters of a binding's cached failures: token
// requests answered with a refusal the auth server gave (refused) or with
// an outage's failure (unavailable). Look them up once per binding.
func (m *Metrics) TokenReplays(binding string) (refused, unavailable prometheus.Counter) {
	return m.tokenReplays.WithLabelValues(binding, "refused"), m.tokenReplays.WithLabelValues(binding, "unavailable")
}

// AppUnreachable implements guard.EventObserver.
func (o inboundObserver) AppUnreachable() { o.m.appErrors.Inc() }

// BadRequestBody implements guard.BodyObserver.
func (o inboundObserver) BadRequestBody() { o.m.inBadBody.Inc() }

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
