package mockauth

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
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

func TestConnectorCARotationControlEndpoint(t *testing.T) {
	g := NewWithT(t)
	post := func(s *Server, body string) (int, map[string]string) {
		resp, err := http.Post(s.Info().AdminURL+"/mock/connector-ca", "application/json", strings.NewReader(body))
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, _ := post(startMock(t, Options{}), `{"step":"add"}`)
	g.Expect(code).To(Equal(http.StatusNotFound), "no endpoint unless asked for")

	s := startMock(t, Options{ConnectorCARotation: true})
	code, out := post(s, `{"step":"add"}`)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(pemCount([]byte(out["trusted"]))).To(Equal(2))
	code, _ = post(s, `{"step":"sideways"}`)
	g.Expect(code).To(Equal(http.StatusConflict))
	code, _ = post(s, `{"step":"add","extra":1}`)
	g.Expect(code).To(Equal(http.StatusBadRequest))
	code, _ = post(s, `{"step":"switch"}`)
	g.Expect(code).To(Equal(http.StatusOK))
	code, out = post(s, `{"step":"remove-old"}`)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(pemCount([]byte(out["trusted"]))).To(Equal(1))
}
