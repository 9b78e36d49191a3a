package mockauth

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
)

// The faults that make a connector (or any host) answer wrongly: hang-ups,
// refused connections, foreign content types and malformed answers, on the
// Go API and the control API. The connector package's tests use each of
// them against its client.
func TestConnectorFaultOptions(t *testing.T) {
	srv := startMock(t, Options{})
	c := srv.Client()
	info := srv.Info()
	tokenURL := info.URL + "/oauth/token"
	token := func() (*http.Response, error) {
		resp, err := c.Do(formRequest(t, tokenURL, ccForm(srv), nil))
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}

	t.Run("bad shapes are refused", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetCSR, Answer: "bogus"})).To(MatchError(ContainSubstring("unknown fault answer")))
		g.Expect(srv.AddFault(Fault{Target: TargetPairing, Answer: AnswerNoCA})).To(MatchError(ContainSubstring(`goes with target "csr"`)))
		g.Expect(srv.AddFault(Fault{Target: TargetCSR, Refuse: true})).To(MatchError(ContainSubstring("kind of request")))
		g.Expect(srv.AddFault(Fault{Target: TargetToken, ContentType: "text/html"})).To(HaveOccurred())
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Latency: 1, ContentType: "text/html"})).To(MatchError(ContainSubstring("content type")))
	})
	t.Run("refused connections are counted and end before TLS", func(t *testing.T) {
		g := NewWithT(t)
		before := srv.Stats().Connections["token"]
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Refuse: true, Count: 1})).To(Succeed())
		c.CloseIdleConnections()
		_, err := token()
		g.Expect(err).To(HaveOccurred())
		resp, err := token()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(srv.Stats().Connections["token"]).To(Equal(before + 2))
	})
	t.Run("hang-up without an answer", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Hangup: true, Count: 1})).To(Succeed())
		_, err := token()
		g.Expect(err).To(MatchError(ContainSubstring("EOF")))
		g.Expect(srv.Stats().LastRequests[len(srv.Stats().LastRequests)-1].Status).To(Equal(-1))
	})
	t.Run("a content type of its own", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(srv.AddFault(Fault{Target: TargetToken, Status: 502, Body: "<html>bad gateway</html>", ContentType: "text/html", Count: 1})).To(Succeed())
		resp, err := token()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
		g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/html"))
	})
	t.Run("the control API takes them", func(t *testing.T) {
		g := NewWithT(t)
		admin := info.AdminURL + "/mock/faults"
		for _, ok := range []string{
			`{"target":"csr","answer":"no-ca","count":1}`, `{"target":"pairing","hangup":true,"count":1}`,
			`{"target":"connector","refuse":true,"count":1}`, `{"target":"info","status":502,"body":"x","content_type":"text/plain"}`,
		} {
			g.Expect(adminDo(t, "POST", admin, ok).status).To(Equal(http.StatusCreated), ok)
		}
		for _, bad := range []string{`{"target":"csr","answer":"bogus"}`, `{"target":"info","answer":"no-ca"}`, `{"target":"csr","refuse":true}`} {
			g.Expect(adminDo(t, "POST", admin, bad).status).To(Equal(http.StatusBadRequest), bad)
		}
		srv.ClearFaults()
	})
}
