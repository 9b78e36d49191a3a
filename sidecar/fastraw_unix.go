//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sidecar

import (
	"io"
	"net"
	"syscall"
)

// rawConnOf is c's syscall.RawConn, or nil when c is not a socket of the
// kind (the fast loop then reads with Read).
func rawConnOf(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawRead is one non-blocking read of the socket fd: errWait when there
// is nothing to read, io.EOF when the peer closed it.
func rawRead(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			return 0, errWait
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
