package sidecar

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// ReasonTokenKeyLimit: the request asked for a token of a new scope set or
// tenant while its binding holds max_token_keys distinct keys (429).
const ReasonTokenKeyLimit = "token-key-limit"

func newKeyLimitCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credbroker_token_key_limit_total",
		Help: "Requests answered 429 token-key-limit because their binding holds max_token_keys distinct token keys (scope sets, tenants), by binding and where the request came in (route, token_api).",
	}, []string{"binding", "via"})
}

// keyLimited reports whether err is the key bound and, if so, counts it.
// binding is a configured name (a bounded label).
func (m *Metrics) keyLimited(err error, binding, via string) bool {
	if !errors.Is(err, ErrTokenKeyLimit) {
		return false
	}
	m.keyLimit.WithLabelValues(binding, via).Inc()
	return true
}

// keyLimitStatus is the status of a key-bound refusal.
const keyLimitStatus = http.StatusTooManyRequests
