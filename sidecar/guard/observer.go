package guard

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Observer counts the guard's decisions. Implementations must be safe for
// concurrent use and cheap: they run on every request. method is jwt, mtls,
// oauth1 or "none" (no rule, no credentials); reason is one of the Reason*
// constants.
type Observer interface {
	Accepted(method Method)
	Refused(method Method, reason string)
}

// EventObserver is optionally implemented by an Observer to count what is
// not an accept or refuse decision: an accepted request the app could not
// take (502 app-unreachable) and the fetches of JWKS verification keys.
// Same rules as Observer: fast and safe for concurrent use.
type EventObserver interface {
	AppUnreachable()
	JWKSFetched(err error) // err is nil on success
}

// BodyObserver is optionally implemented by an Observer to count accepted
// requests whose body broke on the way to the app (a malformed chunk, a
// body cut short): answered 400 bad_request_body and already counted as
// accepted. Same rules as Observer.
type BodyObserver interface {
	BadRequestBody()
}

// MethodNone labels decisions made before any method was tried.
const MethodNone Method = "none"

type nopObserver struct{}

func (nopObserver) Accepted(Method)        {}
func (nopObserver) Refused(Method, string) {}

// PrometheusObserver registers credbroker_inbound_requests_total{method,
// outcome, reason} on reg and returns an Observer that counts into it.
func PrometheusObserver(reg prometheus.Registerer) (Observer, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credbroker_inbound_requests_total",
		Help: "Requests to the inbound guard by method (jwt, mtls, oauth1, none), outcome (accepted, refused) and reason.",
	}, []string{"method", "outcome", "reason"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return promObserver{c}, nil
}

type promObserver struct{ c *prometheus.CounterVec }

func (p promObserver) Accepted(m Method) { p.c.WithLabelValues(string(m), "accepted", "").Inc() }
func (p promObserver) Refused(m Method, reason string) {
	p.c.WithLabelValues(string(m), "refused", reason).Inc()
}
