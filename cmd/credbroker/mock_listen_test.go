package main

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestMockListenHost(t *testing.T) {
	g := NewWithT(t)
	base := MockOptions{TokenTTL: time.Minute, CertTTL: time.Minute, PairingTTL: time.Minute}
	for _, tc := range []struct {
		host  string
		allow bool
		ok    bool
	}{
		{host: "", ok: true},
		{host: "127.0.0.1", ok: true},
		{host: "::1", ok: true},
		{host: "0.0.0.0"},
		{host: "::"},
		{host: "10.1.2.3"},
		{host: "0.0.0.0", allow: true, ok: true},
		{host: "localhost"}, // an IP address, not a name
		{host: "not an ip", allow: true},
	} {
		o := base
		o.ListenHost, o.AllowNonLoopback = tc.host, tc.allow
		err := o.validate()
		if tc.ok {
			g.Expect(err).NotTo(HaveOccurred(), tc.host)
			continue
		}
		g.Expect(errors.Is(err, errBadInput)).To(BeTrue(), "%s: %v", tc.host, err)
		g.Expect(err.Error()).To(ContainSubstring("--listen-host"))
	}
}
