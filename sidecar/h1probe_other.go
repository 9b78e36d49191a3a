//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sidecar

import "net"

// connProbe has no cheap check on this platform: a pooled connection that
// the upstream closed is found when the request fails, and a replayable
// request is retried on a fresh connection.
type connProbe struct{}

func newConnProbe(net.Conn) *connProbe { return nil }

func (p *connProbe) idleOK() bool { return true }

func (p *connProbe) peerGone() bool { return false }
