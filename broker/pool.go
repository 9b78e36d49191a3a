package broker

import (
	"errors"
	"sync"
)

// errPoolClosed is the error of an acquire whose value was being made when
// the pool was closed: the value is closed at once.
var errPoolClosed = errors.New("broker: closed")

// refPool shares values between configuration generations by key. A value
// is created on the first acquire and closed when its last holder releases
// it. mk runs without the pool's lock (it may pair over the network): other
// keys are acquired and released meanwhile, and acquirers of the same key
// wait for the one mk and share its outcome. Safe for concurrent use.
type refPool[T any] struct {
	mu    sync.Mutex
	items map[string]*refItem[T]
}

type refItem[T any] struct {
	ready  chan struct{} // closed when mk returned
	v      T
	err    error // mk's error: the item was never in use
	refs   int
	close  func()
	closed bool // by closeAll or the last release: later releases do nothing
}

// acquire returns the value for key (creating it with mk) and a release
// function to call exactly once.
func (p *refPool[T]) acquire(key string, mk func() (T, func(), error)) (T, func(), error) {
	var zero T
	p.mu.Lock()
	if p.items == nil {
		p.items = map[string]*refItem[T]{}
	}
	it, ok := p.items[key]
	if ok {
		it.refs++
		p.mu.Unlock()
		<-it.ready
		if it.err != nil {
			return zero, nil, it.err
		}
		return it.v, p.releaser(key, it), nil
	}
	it = &refItem[T]{ready: make(chan struct{}), refs: 1}
	p.items[key] = it
	p.mu.Unlock()

	v, closeFn, err := mk()

	p.mu.Lock()
	it.v, it.close, it.err = v, closeFn, err
	closedMeanwhile := it.closed
	if err != nil {
		it.closed = true
		if p.items[key] == it {
			delete(p.items, key)
		}
	}
	close(it.ready)
	p.mu.Unlock()
	if err != nil {
		return zero, nil, err
	}
	if closedMeanwhile {
		if closeFn != nil {
			closeFn()
		}
		return zero, nil, errPoolClosed
	}
	return v, p.releaser(key, it), nil
}

func (p *refPool[T]) releaser(key string, it *refItem[T]) func() {
	var once sync.Once
	return func() { once.Do(func() { p.release(key, it) }) }
}

func (p *refPool[T]) release(key string, it *refItem[T]) {
	p.mu.Lock()
	it.refs--
	last := it.refs == 0 && !it.closed
	if last {
		it.closed = true
		if p.items[key] == it {
			delete(p.items, key)
		}
	}
	p.mu.Unlock()
	if last && it.close != nil {
		it.close()
	}
}

// closeAll closes every value whose mk has returned; a value still being
// made is closed when its mk returns.
func (p *refPool[T]) closeAll() {
	p.mu.Lock()
	items := p.items
	p.items = nil
	var closing []*refItem[T]
	for _, it := range items {
		if it.closed {
			continue
		}
		it.closed = true
		select {
		case <-it.ready:
			closing = append(closing, it)
		default: // acquire closes it when mk returns
		}
	}
	p.mu.Unlock()
	for _, it := range closing {
		if it.close != nil {
			it.close()
		}
	}
}
