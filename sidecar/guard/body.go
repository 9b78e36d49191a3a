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
	buf := bytes.NewBuffer(make([]byte, 0, need))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, br.max+1))
	if deadlineSet {
		_ = rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	switch {
	case err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		return nil, fmt.Errorf("%w (%s)", errBodyTimeout, br.timeout)
	case err != nil:
		return nil, errBodyRead
	case int64(buf.Len()) > br.max:
		return nil, fmt.Errorf("%w: over %d bytes", errBodyTooLarge, br.max)
	}
	_ = r.Body.Close()
	b := buf.Bytes()
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return b, nil
}
