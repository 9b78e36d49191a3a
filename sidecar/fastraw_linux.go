//go:build linux

package sidecar

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
)

// tcpInq is TCP_INQ (Linux 4.18) and TCP_CM_INQ, the type of the control
// message it adds to each receive.
const tcpInq = 36

// reportLeft asks the kernel to say, with each receive on the socket fd,
// how much is left to read (false: it cannot).
func reportLeft(fd int) bool {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpInq, 1) == nil
}

// rawReadLeft is rawRead on a socket with reportLeft on, and whether there
// is more to read: bytes, or the end of the stream (the kernel counts a
// FIN that came with the bytes read as one byte left, so the read that
// returns the end follows at once instead of a wait the poller never ends:
// a client that half-closes after its last request). oob receives the
// control message.
func rawReadLeft(fd int, b, oob []byte) (n int, left bool, err error) {
	for {
		n, oobn, _, _, err := syscall.Recvmsg(fd, b, oob, 0)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			return 0, false, errWait
		case err != nil:
			return 0, false, &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			return 0, false, io.EOF
		}
		left = n == len(b)
		if h := syscall.SizeofCmsghdr; oobn >= syscall.CmsgLen(4) &&
			int32(binary.NativeEndian.Uint32(oob[h-8:])) == syscall.IPPROTO_TCP &&
			int32(binary.NativeEndian.Uint32(oob[h-4:])) == tcpInq {
			left = binary.NativeEndian.Uint32(oob[syscall.CmsgLen(0):]) != 0
		}
		return n, left, nil
	}
}
