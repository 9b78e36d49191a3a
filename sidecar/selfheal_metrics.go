package sidecar

import "github.com/prometheus/client_golang/prometheus"

// selfheal are the counters of self-healing events (docs/reliability.md):
// clock jumps that re-evaluated schedules, and token snapshot loads.
type selfheal struct {
	clockJumps    *prometheus.CounterVec
	snapshotLoads *prometheus.CounterVec
}

func newSelfheal(reg *prometheus.Registry) selfheal {
	s := selfheal{
		clockJumps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_clock_jumps_total",
			Help: "Wall-clock jumps (host suspend, VM pause, clock step) beyond the threshold that re-evaluated schedules, by component (token_client: token refresh and expiry of one binding's client; certificates: certificate renewal and heartbeat).",
		}, []string{"component"}),
		snapshotLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_token_snapshot_loads_total",
			Help: "Tokens read from token_cache_dir at start, by binding and outcome (loaded; ignored: expired, corrupt, or another binding's).",
		}, []string{"binding", "outcome"}),
	}
	reg.MustRegister(s.clockJumps, s.snapshotLoads)
	return s
}

// ClockJumped counts a clock jump that re-evaluated the schedules of
// component ("token_client" or "certificates").
func (m *Metrics) ClockJumped(component string) {
	m.selfheal.clockJumps.WithLabelValues(component).Inc()
}

// TokenSnapshotLoaded counts a token snapshot entry of binding read at
// start; outcome is "loaded" or "ignored".
func (m *Metrics) TokenSnapshotLoaded(binding, outcome string) {
	m.selfheal.snapshotLoads.WithLabelValues(binding, outcome).Inc()
}
