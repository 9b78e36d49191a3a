package sidecar_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

var _ = Describe("the access log and secrets in request targets", func() {
	It("redacts path parameters, never writes user information or a CONNECT target, and bounds the method", func() {
		e := newEnv(mockauth.Options{})
		up := plainUpstream()
		logFile := filepath.Join(e.dir, "access.log")
		sc := e.startSidecar(fmt.Sprintf(`
access_log: {enabled: true, path: %[2]s}
routes:
  - {name: open, upstream: %[1]s, auth: {type: none}}
`, up.URL, logFile))
		session := e.secrets.Plant("a session id in a path parameter")
		matrix := e.secrets.Plant("a matrix parameter")
		password := e.secrets.Plant("a password in user information")
		target := e.secrets.Plant("a CONNECT target")

		resp, body := call("GET", sc.proxy+"/open/items;jsessionid="+session+"/more;key="+matrix+";v=1", nil, nil)
		Expect(resp.StatusCode).To(Equal(200), body)
		hostPort := strings.TrimPrefix(up.URL, "http://")
		code, _ := raw(sc.proxyHP, "GET http://user:"+password+"@"+hostPort+"/abs HTTP/1.1\r\nHost: "+hostPort+"\r\nConnection: close\r\n\r\n")
		Expect(code).To(BeNumerically(">", 0))
		code, _ = raw(sc.proxyHP, "CONNECT "+target+".example:443 HTTP/1.1\r\nHost: "+target+".example:443\r\nConnection: close\r\n\r\n")
		Expect(code).To(Equal(403))

		// A method of half a MiB (a token net/http takes): the line stays small.
		code, _ = raw(sc.proxyHP, strings.Repeat("M", 512<<10)+" /open/long-method HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		Expect(code).To(BeNumerically(">", 0))

		var log string
		Eventually(func() int {
			b, _ := os.ReadFile(logFile)
			log = string(b)
			return strings.Count(log, "\n")
		}).WithTimeout(20 * time.Second).Should(Equal(4))
		Expect(log).To(ContainSubstring(`"path":"/open/items;redacted/more;redacted"`), log)
		Expect(log).To(ContainSubstring(`"path":"/abs"`), log)
		e.secrets.ExpectNotIn([]byte(log))
		for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
			Expect(len(l)).To(BeNumerically("<", 4096), "one line stays small: %.200s", l)
		}
		Expect(log).To(ContainSubstring(`"method":"` + strings.Repeat("M", 32) + `…"`))
	})
})
