package sidecar

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/credbroker/credbroker/internal/buildinfo"
	"github.com/credbroker/credbroker/sidecar/guard"
)

// Metrics are the sidecar's Prometheus metrics, on a registry of their own.
// Labels carry route, binding and certificate names, reasons and status
// codes — never a credential. Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests   *prometheus.CounterVec
	fastPath   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	refused    *prometheus.CounterVec
	credErrors *prometheus.CounterVec
	tokenAPI   *prometheus.CounterVec

	tokenFetches   *prometheus.CounterVec
	tokenFetchTime *prometheus.HistogramVec
	tokenHits      *prometheus.CounterVec
	tokenRefreshes *prometheus.CounterVec
	keyLimit       *prometheus.CounterVec // keylimit.go

	adminRefused *prometheus.CounterVec
	connsRefused *prometheus.CounterVec
	connsOpen    *prometheus.GaugeVec

	destLookups *prometheus.CounterVec
	destHits    *prometheus.CounterVec

	reloads *prometheus.CounterVec
	ready   prometheus.Gauge
	inbound *prometheus.CounterVec
	// events is what Metrics counts outside the hot path (observe.go).
	events
	selfheal selfheal               // selfheal_metrics.go
	persist  *prometheus.CounterVec // persist_metrics.go
	reauth   reauthMetrics          // reauth.go

	mu     sync.Mutex
	routes map[string]*routeMetrics
	certs  atomic.Pointer[func() map[string]CertificateState]
}

// NewMetrics creates the metrics and their registry (with the Go runtime
// and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_requests_total",
			Help: "Requests through the egress proxy by route and response status (499: the app went away).",
		}, []string{"route", "code"}),
		fastPath: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_fast_path_requests_total",
			Help: "Requests of credbroker_proxy_requests_total served on the fast HTTP/1.1 path (the rest went through net/http), by route.",
		}, []string{"route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "credbroker_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_refused_total",
			Help: "Requests the proxy listener answered itself other than with a credential error, by reason (not-a-route, connect-refused, dot-segment, scheme-refused, host-not-allowed, cross-site, origin-refused, hop-by-hop-credential, bad-request-body, tenant-invalid; of a route: no-user-token, body-too-large, signing-failed, token-key-limit, upstream-unreachable, upstream-timeout, destination-no-connectivity).",
		}, []string{"reason"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_admin_refused_total",
			Help: "Requests the admin listener refused, by reason (host-not-allowed, origin-refused, cross-site).",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_connections_refused_total",
			Help: "Client connections closed at accept because the listener was at max_connections, by listener (proxy, admin, inbound).",
		}, []string{"listener"}),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credbroker_connections_open",
			Help: "Open client connections by listener (proxy, admin, inbound).",
		}, []string{"listener"}),
		credErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_credential_errors_total",
			Help: "Requests a route answered (503, or a destination route's status) because no valid credential could be had, by route and reason.",
		}, []string{"route", "reason"}),
		tokenAPI: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_api_requests_total",
			Help: "Requests to GET /.credbroker/v1/token by binding and response status.",
		}, []string{"binding", "code"}),
		tokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_fetches_total",
			Help: "Token requests sent to the auth server, by binding and outcome (ok or error).",
		}, []string{"binding", "outcome"}),
		tokenFetchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "credbroker_token_fetch_duration_seconds",
			Help:    "Duration of token requests to the auth server, by binding.",
			Buckets: prometheus.DefBuckets,
		}, []string{"binding"}),
		tokenHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_cache_hits_total",
			Help: "Tokens served from the cache, by binding.",
		}, []string{"binding"}),
		tokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_refreshes_total",
			Help: "Background refreshes of cached tokens, by binding and outcome.",
		}, []string{"binding", "outcome"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_config_reloads_total",
			Help: "Configuration loads by outcome (ok, refused).",
		}, []string{"outcome"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credbroker_ready",
			Help: "1 when every configured credential is available (as /readyz), else 0.",
		}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_inbound_requests_total",
			Help: "Decisions of the inbound guard by method, outcome (accepted, refused) and refusal reason.",
		}, []string{"method", "outcome", "reason"}),
		routes: map[string]*routeMetrics{},
	}
	m.reg.MustRegister(buildInfoGauge(buildinfo.Get()))
	m.reg.MustRegister(m.requests, m.fastPath, m.duration, m.refused, m.credErrors, m.tokenAPI, m.adminRefused, m.connsRefused, m.connsOpen,
		m.tokenFetches, m.tokenFetchTime, m.tokenHits, m.tokenRefreshes, m.reloads, m.ready, m.inbound,
		certCollector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.keyLimit = newKeyLimitCounter()
	m.reg.MustRegister(m.keyLimit)
	m.destLookups, m.destHits = newDestinationMetrics()
	m.reg.MustRegister(m.destLookups, m.destHits)
	m.events = newEvents(m.reg)
	m.selfheal = newSelfheal(m.reg)
	m.persist = newPersistMetrics(m.reg)
	m.reauth = newReauthMetrics(m.reg)
	return m
}

// buildInfoGauge is credbroker_build_info: one series, always 1, whose labels
// say which build is running (join it to other series by instance).
func buildInfoGauge(bi buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "credbroker_build_info",
		Help: "Always 1; the labels name the running build's version, commit and Go version.",
	}, []string{"version", "commit", "goversion"})
	g.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	return g
}

// Registry returns the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// TokenFetched records one token request to the auth server.
func (m *Metrics) TokenFetched(binding string, err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.tokenFetches.WithLabelValues(binding, outcome).Inc()
	m.tokenFetchTime.WithLabelValues(binding).Observe(d.Seconds())
}

// TokenCacheHits returns the cache-hit counter of a binding (look it up
// once, not per request).
func (m *Metrics) TokenCacheHits(binding string) prometheus.Counter {
	return m.tokenHits.WithLabelValues(binding)
}

// TokenRefreshed records one background refresh.
func (m *Metrics) TokenRefreshed(binding string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.tokenRefreshes.WithLabelValues(binding, outcome).Inc()
}

// InboundObserver counts the inbound guard's decisions.
func (m *Metrics) InboundObserver() guard.Observer { return inboundObserver{m} }

type inboundObserver struct{ m *Metrics }

func (o inboundObserver) Accepted(method guard.Method) {
	o.m.inbound.WithLabelValues(string(method), "accepted", "").Inc()
}

func (o inboundObserver) Refused(method guard.Method, reason string) {
	o.m.inbound.WithLabelValues(string(method), "refused", reason).Inc()
}

// setCertificates sets the function the certificate collector reads at
// scrape time.
func (m *Metrics) setCertificates(f func() map[string]CertificateState) { m.certs.Store(&f) }

// routeMetrics are one route's pre-looked-up series, so that the hot path
// does no label lookups (and no allocations) once a status code was seen.
type routeMetrics struct {
	m        *Metrics
	name     string
	duration prometheus.Observer
	fast     prometheus.Counter
	codes    [600]atomic.Pointer[prometheus.Counter]
}

func (m *Metrics) route(name string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm, ok := m.routes[name]; ok {
		return rm
	}
	rm := &routeMetrics{m: m, name: name, duration: m.duration.WithLabelValues(name), fast: m.fastPath.WithLabelValues(name)}
	m.routes[name] = rm
	return rm
}

func (rm *routeMetrics) count(code int) {
	if code < 0 || code >= len(rm.codes) {
		rm.m.requests.WithLabelValues(rm.name, strconv.Itoa(code)).Inc()
		return
	}
	p := rm.codes[code].Load()
	if p == nil {
		c := rm.m.requests.WithLabelValues(rm.name, strconv.Itoa(code))
		p = &c
		rm.codes[code].Store(p)
	}
	(*p).Inc()
}

// certCollector exports the state of every certificate at scrape time.
type certCollector struct{ m *Metrics }

var (
	descNotAfter    = prometheus.NewDesc("credbroker_certificate_not_after_seconds", "NotAfter of the certificate in use (Unix seconds).", []string{"certificate"}, nil)
	descNextRenewal = prometheus.NewDesc("credbroker_certificate_next_renewal_seconds", "When the next renewal is due (Unix seconds; 0 when none is scheduled).", []string{"certificate"}, nil)
	descRenewals    = prometheus.NewDesc("credbroker_certificate_renewals_total", "Successful renewals of the certificate.", []string{"certificate"}, nil)
	descHeartbeats  = prometheus.NewDesc("credbroker_connector_heartbeats_total", "Successful heartbeats (management info calls) to the connector.", []string{"certificate"}, nil)
	descNeedsToken  = prometheus.NewDesc("credbroker_certificate_needs_token", "1 when the certificate expired or was revoked and a new one-time token is needed.", []string{"certificate"}, nil)
	descCertLoaded  = prometheus.NewDesc("credbroker_certificate_loaded", "1 when a certificate is loaded.", []string{"certificate"}, nil)
	descRevoked     = prometheus.NewDesc("credbroker_certificate_revoked", "1 when the connector refused renewal for good (revoked or unknown); the certificate serves until it expires.", []string{"certificate"}, nil)
	descFailing     = prometheus.NewDesc("credbroker_certificate_failing", "1 while the last load, renewal or heartbeat of the certificate failed (cleared by the next success).", []string{"certificate"}, nil)
)

func (c certCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNextRenewal, descRenewals, descHeartbeats, descNeedsToken, descCertLoaded, descRevoked, descFailing} {
		ch <- d
	}
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.certs.Load()
	if f == nil {
		return
	}
	for name, st := range (*f)() {
		loaded := 0.0
		if !st.NotAfter.IsZero() {
			loaded = 1
			ch <- prometheus.MustNewConstMetric(descNotAfter, prometheus.GaugeValue, float64(st.NotAfter.Unix()), name)
		}
		ch <- prometheus.MustNewConstMetric(descCertLoaded, prometheus.GaugeValue, loaded, name)
		next := 0.0
		if !st.NextRenewal.IsZero() {
			next = float64(st.NextRenewal.Unix())
		}
		ch <- prometheus.MustNewConstMetric(descNextRenewal, prometheus.GaugeValue, next, name)
		ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(st.Renewals), name)
		ch <- prometheus.MustNewConstMetric(descHeartbeats, prometheus.CounterValue, float64(st.Heartbeats), name)
		needs := 0.0
		if st.NeedsToken {
			needs = 1
		}
		ch <- prometheus.MustNewConstMetric(descNeedsToken, prometheus.GaugeValue, needs, name)
		ch <- prometheus.MustNewConstMetric(descRevoked, prometheus.GaugeValue, b2f(st.Revoked), name)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, b2f(st.LastError != ""), name)
	}
}
