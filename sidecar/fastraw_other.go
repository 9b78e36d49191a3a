//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sidecar

import (
	"net"
	"syscall"
)

// rawConnOf: the fast loop reads with Read on this platform.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func rawRead(int, []byte) (int, error) { return 0, errWait }
