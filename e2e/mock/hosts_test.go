package mock_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var _ = Describe("credbroker mock --hosts-file and --binding-cert-ttl", func() {
	It("writes a hosts file a resolver can use for every name, and mints an x509 binding that expires when asked", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "mock")
		hostsFile := filepath.Join(GinkgoT().TempDir(), "hosts")
		s := harness.Start(bin, nil, "mock", "--dir", dir, "--hosts-file", hostsFile, "--binding-cert-ttl", "15s")
		DeferCleanup(s.Kill)
		var info map[string]any
		Eventually(func() error {
			raw, err := os.ReadFile(filepath.Join(dir, "mock.json"))
			if err != nil {
				return err
			}
			return json.Unmarshal(raw, &info)
		}).WithTimeout(60 * time.Second).Should(Succeed())

		By("naming every host of mock.json and every tenant in the hosts file")
		raw, err := os.ReadFile(hostsFile)
		Expect(err).NotTo(HaveOccurred())
		hosts := map[string]string{}
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || strings.HasPrefix(f[0], "#") {
				continue
			}
			Expect(f).To(HaveLen(2), "one address and one name per line: %q", line)
			hosts[f[1]] = f[0]
		}
		// The same map as "resolve" in mock.json; on port 443 each role has
		// its own address, on random ports all share 127.0.0.1.
		resolve := map[string]string{}
		for _, r := range info["resolve"].([]any) {
			name, addr, ok := strings.Cut(r.(string), "=")
			Expect(ok).To(BeTrue(), r)
			resolve[name] = addr
		}
		Expect(hosts).To(Equal(resolve))
		want := map[string]string{"url": "127.0.0.2", "certurl": "127.0.0.3", "ias_url": "127.0.0.2",
			"connector_url": "127.0.0.4", "gateway_url": "127.0.0.5", "token_keys_url": "127.0.0.2"}
		for k, addr := range want {
			u, err := url.Parse(info[k].(string))
			Expect(err).NotTo(HaveOccurred())
			if info["port443"] == true {
				Expect(u.Port()).To(BeEmpty(), k)
			} else {
				Expect(u.Port()).NotTo(BeEmpty(), k)
				addr = "127.0.0.1"
			}
			Expect(hosts).To(HaveKeyWithValue(u.Hostname(), addr), k)
		}
		for _, t := range info["tenants"].([]any) {
			sub := t.(map[string]any)["subdomain"].(string)
			Expect(hosts).To(HaveKey(sub + ".authentication.localhost"))
			Expect(hosts).To(HaveKey(sub + ".authentication.cert.localhost"))
		}

		By("resolving through the hosts file only")
		caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(caPEM)).To(BeTrue())
		viaHosts := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				ip, ok := hosts[host]
				if !ok {
					return nil, &net.DNSError{Err: "not in the hosts file", Name: host, IsNotFound: true}
				}
				var d net.Dialer
				return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
			},
		}}
		resp, err := viaHosts.Get(info["token_keys_url"].(string))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))

		By("minting an x509 binding whose certificate lives 15 s")
		vcapFile := filepath.Join(dir, "vcap.json")
		var vcap map[string][]struct {
			Name        string         `json:"name"`
			Credentials map[string]any `json:"credentials"`
		}
		vraw, err := os.ReadFile(vcapFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(vraw, &vcap)).To(Succeed())
		var certPEM string
		for _, list := range vcap {
			for _, b := range list {
				if b.Name == "xsuaa-x509" {
					certPEM = b.Credentials["certificate"].(string)
				}
			}
		}
		block, _ := pem.Decode([]byte(certPEM))
		Expect(block).NotTo(BeNil())
		leaf, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(leaf.NotAfter).To(BeTemporally("~", time.Now().Add(15*time.Second), 10*time.Second))

		token := func() *gexec.Session {
			t := harness.Start(bin, nil, "token", "--vcap-file", vcapFile, "--binding", "xsuaa-x509", "--ca-file", filepath.Join(dir, "ca.crt"))
			Eventually(t).WithTimeout(60 * time.Second).Should(gexec.Exit())
			return t
		}
		By("getting a token with it, and a clear refusal once it expired")
		t := token()
		Expect(t.ExitCode()).To(Equal(0), string(t.Err.Contents()))
		Expect(time.Now()).To(BeTemporally("<", leaf.NotAfter), "the token was had before expiry")
		Eventually(func() bool { return time.Now().After(leaf.NotAfter) }).WithTimeout(30 * time.Second).Should(BeTrue())
		t = token()
		Expect(t.ExitCode()).NotTo(Equal(0))
		Expect(string(t.Err.Contents())).To(ContainSubstring("expired"))
	})
})
