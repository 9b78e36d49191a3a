package sidecar

import "github.com/prometheus/client_golang/prometheus"

// Events of credbroker_identity_persist_events_total (docs/observability.md).
const (
	PersistLoaded   = "loaded"    // a valid pair was read from the Secret at start
	PersistEmpty    = "empty"     // the Secret held no valid pair at start
	PersistSaved    = "saved"     // a pair was written to the Secret
	PersistAdopted  = "adopted"   // a pair another replica wrote was made live
	PersistConflict = "conflict"  // the Secret changed in between (409): read again
	PersistError    = "error"     // the API server failed or could not be reached: retried with backoff
	PersistLockWait = "lock_wait" // another replica holds the renewal: wait for its pair
)

func newPersistMetrics(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credbroker_identity_persist_events_total",
		Help: "Events of a paired identity kept in a Kubernetes Secret, by certificate and event (loaded, empty, saved, adopted, conflict, error, lock_wait).",
	}, []string{"certificate", "event"})
	reg.MustRegister(c)
	return c
}

// IdentityPersist counts an event of the persisted identity of
// certificate; event is one of the Persist… constants.
func (m *Metrics) IdentityPersist(certificate, event string) {
	m.persist.WithLabelValues(certificate, event).Inc()
}
