//go:build !linux

package sidecar

// reportLeft: no platform but Linux says how much is left to read.
func reportLeft(int) bool { return false }

// rawReadLeft is rawRead; a read that filled b may have left more.
func rawReadLeft(fd int, b, _ []byte) (int, bool, error) {
	n, err := rawRead(fd, b)
	return n, n == len(b), err
}
