package harness

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
)

// Client is an HTTP client for specs: no proxy from the environment, a
// generous timeout, enough idle connections for a load.
var Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}

// LoadOptions say how StartLoad sends requests.
type LoadOptions struct {
	Workers int           // goroutines (default 1)
	Every   time.Duration // pacing of one worker's requests, not a wait for an outcome (default 5 ms)
	For     time.Duration // stop after this long (0: only at Halt)
	// Do makes one request (default: GET through Client).
	Do func(url string) (*http.Response, error)
}

// Load sends requests to a list of URLs until halted or until its time is
// up; a request succeeds when it answers 200. Safe for concurrent use.
type Load struct {
	OK, Failed atomic.Int64
	mu         sync.Mutex
	why        map[string]int // at most 50 distinct reasons
	first      time.Time      // of the first failure
	stop       chan struct{}
	wg         sync.WaitGroup
	done       chan struct{}
	end        func() // closes stop once
}

// StartLoad starts o.Workers goroutines, worker w sending to urls in turn
// from urls[w].
func StartLoad(urls []string, o LoadOptions) *Load {
	if o.Do == nil {
		o.Do = Client.Get
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Every <= 0 {
		o.Every = 5 * time.Millisecond
	}
	var deadline <-chan time.Time
	if o.For > 0 {
		deadline = time.After(o.For)
	}
	l := &Load{why: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	var ended sync.Once
	end := func() { ended.Do(func() { close(l.stop) }) }
	if deadline != nil {
		go func() {
			select {
			case <-deadline:
				end()
			case <-l.stop:
			}
		}()
	}
	l.end = end
	for w := range o.Workers {
		l.wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer l.wg.Done()
			tick := time.NewTicker(o.Every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(o.Do, urls[(w+i)%len(urls)])
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	go func() {
		l.wg.Wait()
		close(l.done)
	}()
	return l
}

func (l *Load) one(do func(string) (*http.Response, error), u string) {
	resp, err := do(u)
	if err != nil {
		l.fail(err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		l.fail(fmt.Sprintf("%s: %d %s", u, resp.StatusCode, resp.Header.Get("X-Credbroker-Error")))
		return
	}
	l.OK.Add(1)
}

func (l *Load) fail(why string) {
	l.Failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first.IsZero() {
		l.first = time.Now()
	}
	if _, ok := l.why[why]; ok || len(l.why) < 50 {
		l.why[why]++
	}
}

// Halt stops the load and waits for the workers. Idempotent.
func (l *Load) Halt() {
	l.end()
	l.wg.Wait()
}

// Done is closed when every worker has returned (time up or Halt).
func (l *Load) Done() <-chan struct{} { return l.done }

// Why returns the failure reasons with their counts.
func (l *Load) Why() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.why)
}

// First returns when the first failure happened (zero: none).
func (l *Load) First() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// Failures describes the failures for a message.
func (l *Load) Failures() string {
	return fmt.Sprintf("%v", l.Why())
}
