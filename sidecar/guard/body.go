package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Reasons of the bounds on unauthenticated work (metric label values).
const (
	ReasonKeyFetchLimited = "key_fetch_limited" // 503: key set not cached, fetch budget spent
	ReasonBodyTimeout     = "body_timeout"      // 408: body not received within limits.body_timeout
	ReasonBodyMemory      = "body_memory"       // 503: limits.body_memory in use
)

// bodyBudget bounds the bytes that requests being authenticated hold in
// buffered bodies, across all rules. Reads whose caller is not
// authenticated yet (form bodies, which the signature covers) may hold at
// most half of it, so that they can never starve callers whose signature
// was already verified. It never blocks: a request that does not fit is
// refused.
type bodyBudget struct {
	mu         sync.Mutex
	max        int64
	used       int64
	unverified int64 // part of used held by unauthenticated reads
}

// tryAcquire reserves n bytes; verified says whether the caller's
// signature was checked already.
func (b *bodyBudget) tryAcquire(n int64, verified bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max || (!verified && b.unverified+n > b.max/2) {
		return false
	}
	b.used += n
	if !verified {
		b.unverified += n
	}
	return true
}

func (b *bodyBudget) release(n int64, verified bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if !verified {
		b.unverified -= n
	}
}

// inUse is for tests.
func (b *bodyBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// bodyReader buffers request bodies for checks that need the whole body:
// at most max bytes, within timeout, within the shared budget.
type bodyReader struct {
	max     int64
	timeout time.Duration
	budget  *bodyBudget
}

var (
	errBodyTooLarge = errors.New("body larger than the limit")
	errBodyMemory   = errors.New("memory for buffered bodies exhausted")
	errBodyTimeout  = errors.New("body not received within the read timeout")
	errBodyRead     = errors.New("body could not be read")
)

// read buffers r's body and replaces it with the buffer, so the app still
// gets it. The reservation is held until the request ends. A body
// announced (Content-Length) larger than max is refused without reading a
// byte; so is one that does not fit into the budget.
func (br *bodyReader) read(w http.ResponseWriter, r *http.Request, verified bool) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > br.max {
		return nil, fmt.Errorf("%w: Content-Length %d over %d bytes", errBodyTooLarge, r.ContentLength, br.max)
	}
	need := r.ContentLength
	if need < 0 {
		need = br.max // chunked: reserve the most it may grow to
	}
	if need == 0 {
		return nil, nil
	}
	if !br.budget.tryAcquire(need, verified) {
		return nil, fmt.Errorf("%w (%d bytes reserved at most)", errBodyMemory, br.budget.max)
	}
	context.AfterFunc(r.Context(), func() { br.budget.release(need, verified) })
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(br.timeout)) == nil
	b, err := readAtMost(r.Body, need, br.max)
	if deadlineSet {
		_ = rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	switch {
	case err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		return nil, fmt.Errorf("%w (%s)", errBodyTimeout, br.timeout)
	case errors.Is(err, errBodyTooLarge):
		return nil, fmt.Errorf("%w: over %d bytes", errBodyTooLarge, br.max)
	case err != nil:
		return nil, errBodyRead
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return b, nil
}

// readAtMost reads r to its end into one buffer of at most limit bytes:
// the announced length (allocated once), or max for a body of unknown
// length (doubling from 4 KiB as needed). A byte beyond limit is
// errBodyTooLarge.
func readAtMost(r io.Reader, limit, max int64) ([]byte, error) {
	c := limit
	if limit == max && c > 4<<10 {
		c = 4 << 10
	}
	buf := make([]byte, 0, c)
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= limit {
				var one [1]byte
				n, err := io.ReadFull(r, one[:])
				switch {
				case n > 0:
					return nil, errBodyTooLarge
				case err == io.EOF || err == io.ErrUnexpectedEOF:
					return buf, nil
				}
				return nil, err
			}
			nb := make([]byte, len(buf), min(limit, 2*int64(cap(buf))))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
