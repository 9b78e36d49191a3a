package connector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/credbroker/credbroker/internal/clock"
)

// HeartbeatResult is the outcome of one management info call.
type HeartbeatResult struct {
	Time time.Time
	// Info is the answer; nil when Err is set.
	Info *ManagementInfo
	Err  error
	// Changed is true when Info differs from the last known info in its
	// identity or URLs, or when runtime.tokenUrl appeared, disappeared or
	// points elsewhere (a fresh token for the same runtime connector is no
	// change; Info always carries the latest one). It is also true on the
	// first success without an initial info.
	Changed bool
}

// HeartbeatStatus summarises the heartbeat for health endpoints and metrics.
type HeartbeatStatus struct {
	LastAttempt         time.Time
	LastSuccess         time.Time
	LastError           error
	ConsecutiveFailures int
	Successes           int
	Failures            int
	// Info is the last info received (or the initial one).
	Info *ManagementInfo
}

// Heartbeat calls the management info endpoint periodically, reports every
// outcome and publishes the info whenever it changes.
type Heartbeat struct {
	heartbeatOptions
	client  *Client
	infoURL string

	runMu sync.Mutex // one Run or Beat at a time
	mu    sync.Mutex
	st    HeartbeatStatus
}

// HeartbeatOption configures a Heartbeat.
type HeartbeatOption func(*heartbeatOptions)

// heartbeatOptions are what the HeartbeatOptions set; NewHeartbeat
// validates them.
type heartbeatOptions struct {
	interval time.Duration
	ticks    <-chan time.Time
	clock    clock.Clock
	onResult func(HeartbeatResult)
	onChange func(ManagementInfo)
	initial  *ManagementInfo
	jumps    func() <-chan struct{}
	err      error // the first invalid option
}

func (o *heartbeatOptions) invalid(err error) {
	if o.err == nil {
		o.err = err
	}
}

// HeartbeatInterval sets the period (default one minute).
func HeartbeatInterval(d time.Duration) HeartbeatOption {
	return func(o *heartbeatOptions) {
		if d <= 0 {
			o.invalid(fmt.Errorf("%w: heartbeat interval %v", ErrInvalidInput, d))
			return
		}
		o.interval = d
	}
}

// HeartbeatTicks drives the heartbeat from ticks instead of a ticker of the
// interval (tests send on the channel to make it beat).
func HeartbeatTicks(ticks <-chan time.Time) HeartbeatOption {
	return func(o *heartbeatOptions) { o.ticks = ticks }
}

// HeartbeatJumps makes the heartbeat beat at once whenever the channel
// changed returns is closed (a wall-clock jump: after a host suspend the
// ticker, on the monotonic clock, would beat late); changed is called again
// for the next one. *clock.JumpWatcher's Changed fits.
func HeartbeatJumps(changed func() <-chan struct{}) HeartbeatOption {
	return func(o *heartbeatOptions) { o.jumps = changed }
}

// HeartbeatClock sets the clock of the beats (every interval on it,
// unless HeartbeatTicks drives them) and the time of results and status
// (default: the system clock).
func HeartbeatClock(c clock.Clock) HeartbeatOption {
	return func(o *heartbeatOptions) {
		if c == nil {
			o.invalid(fmt.Errorf("%w: nil clock", ErrInvalidInput))
			return
		}
		o.clock = c
	}
}

// OnResult is called after every call, success or failure (for metrics and
// status). It runs on the heartbeat's goroutine: keep it short.
func OnResult(f func(HeartbeatResult)) HeartbeatOption {
	return func(o *heartbeatOptions) { o.onResult = f }
}

// OnChange is called with the new info whenever it changed (a new events
// URL, a runtime token URL to pair the second phase with, …). It runs on the
// heartbeat's goroutine before OnResult.
func OnChange(f func(ManagementInfo)) HeartbeatOption {
	return func(o *heartbeatOptions) { o.onChange = f }
}

// InitialInfo sets the info already known (for example from
// connection.json) so that an unchanged answer is not reported as a change.
func InitialInfo(info ManagementInfo) HeartbeatOption {
	return func(o *heartbeatOptions) { o.initial = &info }
}

// NewHeartbeat returns a heartbeat on infoURL through c (whose client
// certificate hook supplies the certificate).
func NewHeartbeat(c *Client, infoURL string, opts ...HeartbeatOption) (*Heartbeat, error) {
	if _, err := checkURL("infoUrl", infoURL); err != nil {
		return nil, err
	}
	h := &Heartbeat{client: c, infoURL: infoURL, heartbeatOptions: heartbeatOptions{interval: time.Minute, clock: clock.System}}
	for _, o := range opts {
		o(&h.heartbeatOptions)
	}
	if h.err != nil {
		return nil, h.err
	}
	h.st.Info = h.initial
	return h, nil
}

// Status returns a copy of the current status.
func (h *Heartbeat) Status() HeartbeatStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// Run beats once at once and then on every tick until ctx ends; it returns
// nil then. Failures do not stop it: they are reported.
func (h *Heartbeat) Run(ctx context.Context) error {
	h.Beat(ctx)
	for {
		var jumpC <-chan struct{}
		if h.jumps != nil {
			jumpC = h.jumps()
		}
		ticks := h.ticks
		if ticks == nil {
			ticks = h.clock.At(h.clock.Now().Add(h.interval))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			h.Beat(ctx)
		case <-jumpC:
			h.Beat(ctx)
		}
	}
}

// Beat makes one management info call now and reports it.
func (h *Heartbeat) Beat(ctx context.Context) HeartbeatResult {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	info, err := h.client.Info(ctx, h.infoURL)
	res := HeartbeatResult{Time: h.clock.Now(), Info: info, Err: err}
	h.mu.Lock()
	h.st.LastAttempt = res.Time
	if err != nil {
		if ctx.Err() != nil {
			h.mu.Unlock()
			return res // stopping: not a failure of the connector
		}
		h.st.LastError = err
		h.st.ConsecutiveFailures++
		h.st.Failures++
	} else {
		res.Changed = h.st.Info == nil || !sameInfo(*h.st.Info, *info)
		h.st.LastError = nil
		h.st.ConsecutiveFailures = 0
		h.st.Successes++
		h.st.LastSuccess = res.Time
		h.st.Info = info
	}
	h.mu.Unlock()
	if err != nil {
		h.client.log.Warn("connector heartbeat failed", "url", RedactURL(h.infoURL), "error", err.Error())
	}
	if res.Changed && h.onChange != nil {
		h.client.log.Info("connector info changed", "url", RedactURL(h.infoURL), "events_url", info.URLs.EventsURL, "runtime_token", info.RuntimeTokenURL() != "")
		h.onChange(*info)
	}
	if h.onResult != nil {
		h.onResult(res)
	}
	return res
}

func sameInfo(a, b ManagementInfo) bool {
	// A connector may mint a fresh runtime token on every call: only a
	// runtime connector that appears, goes or moves is a change.
	return a.ClientIdentity == b.ClientIdentity && a.URLs == b.URLs &&
		(a.RuntimeTokenURL() == "") == (b.RuntimeTokenURL() == "") &&
		RedactURL(a.RuntimeTokenURL()) == RedactURL(b.RuntimeTokenURL())
}
