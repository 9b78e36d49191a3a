//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sidecar

import (
	"net"
	"syscall"
)

// connProbe tells whether an idle connection is still usable without
// blocking: one non-blocking MSG_PEEK receive on the socket. Anything to
// read on an idle connection (EOF, a reset, a TLS alert, stray bytes) means
// it must not carry another request.
type connProbe struct {
	rc    syscall.RawConn
	buf   [1]byte
	alive bool // nothing to read, and the connection not closed
	gone  bool // the peer closed or reset the connection
	peek  func(fd uintptr)
}

func newConnProbe(c net.Conn) *connProbe {
	rc := rawConnOf(c)
	if rc == nil {
		return nil
	}
	p := &connProbe{rc: rc}
	p.peek = func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
		p.gone = n == 0 && err == nil || err != nil && !p.alive
	}
	return p
}

// idleOK reports whether nothing is waiting to be read on the idle
// connection (nil: no probe, assume so).
func (p *connProbe) idleOK() bool {
	if p == nil {
		return true
	}
	// Control, not Read: the receive never waits, so it needs neither the
	// poller nor the read lock, and a read deadline left on the
	// connection (armHeaderDeadline) does not fail it.
	if err := p.rc.Control(p.peek); err != nil {
		return false
	}
	return p.alive
}

// peerGone reports whether the peer has closed or reset the connection
// (bytes waiting to be read, a pipelined request, are not that).
func (p *connProbe) peerGone() bool {
	if p == nil {
		return false
	}
	if err := p.rc.Control(p.peek); err != nil {
		return true
	}
	return p.gone
}
