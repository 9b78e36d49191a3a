package mockauth

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
)

func pemCount(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return n
		}
		n++
	}
}

func TestConnectorCARotationSteps(t *testing.T) {
	g := NewWithT(t)
	off := startMock(t, Options{})
	g.Expect(errors.Is(off.RotateConnectorCA(CAAdd), ErrCARotation)).To(BeTrue(), "off unless asked for")

	s := startMock(t, Options{ConnectorCARotation: true})
	old := s.ConnectorCAPEM()
	g.Expect(errors.Is(s.RotateConnectorCA(CASwitch), ErrCARotation)).To(BeTrue(), "nothing to switch to yet")
	g.Expect(errors.Is(s.RotateConnectorCA(CARemoveOld), ErrCARotation)).To(BeTrue(), "nothing to remove yet")
	g.Expect(errors.Is(s.RotateConnectorCA("sideways"), ErrCARotation)).To(BeTrue())

	g.Expect(s.RotateConnectorCA(CAAdd)).To(Succeed())
	g.Expect(pemCount(s.ConnectorCAsPEM())).To(Equal(2), "old and new trusted")
	g.Expect(s.ConnectorCAPEM()).To(Equal(old), "still issued by the old CA")

	g.Expect(s.RotateConnectorCA(CASwitch)).To(Succeed())
	g.Expect(s.ConnectorCAPEM()).NotTo(Equal(old), "issued by the new CA")
	g.Expect(bytes.Contains(s.ConnectorCAsPEM(), old)).To(BeTrue(), "the old CA stays trusted until removed")

	g.Expect(s.RotateConnectorCA(CARemoveOld)).To(Succeed())
	g.Expect(pemCount(s.ConnectorCAsPEM())).To(Equal(1))
	g.Expect(bytes.Contains(s.ConnectorCAsPEM(), old)).To(BeFalse())
}
