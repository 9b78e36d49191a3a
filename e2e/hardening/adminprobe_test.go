package hardening_test

import (
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// Found by the re-review of issue 15 (left to the datapath branch, which
// owns sidecar/server.go, where the admin server's timeouts are set): the
// Helm chart binds admin_listen to 0.0.0.0 for the kubelet's probes, so any
// pod that can reach the port can hold every admin slot (max_connections.
// admin, default 64) with one /healthz request per keep-alive connection;
// they then idle for client_idle_timeout (120 s) and every probe is refused
// with 503 connection-limit: the pod is marked unready and restarted for as
// long as the attacker repeats it. Probes open a new connection each time,
// so the admin listener gains nothing from long keep-alive. This spec fails
// until idle admin connections are closed quickly (for example
// `Connection: close` on every admin answer, or an idle timeout of a few
// seconds on the admin server).
var _ = Describe("the admin listener under idle keep-alive connections", func() {
	It("keeps answering probes on new connections while other clients hold every admin slot idle", func() {
		r := newRig(mockauth.Options{})
		const limit = 8
		p := r.run("max_connections: {admin: 8}\n")
		held := 0
		for range limit {
			rc := dialRaw(p.admin[len("http://"):])
			if status, _, _ := rc.do("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); status == 200 {
				held++
			}
		}
		Expect(held).To(BeNumerically(">=", limit-1), "the flood did not reach the cap")
		probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		Eventually(func() (int, error) {
			resp, err := probe.Get(p.admin + "/healthz")
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, nil
		}).WithTimeout(30*time.Second).WithPolling(250*time.Millisecond).Should(Equal(200),
			"probes on new connections were refused while idle keep-alive connections held the admin cap")
	})
})
