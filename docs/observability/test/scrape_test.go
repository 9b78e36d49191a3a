package test

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// repoRoot is the main module, whose cmd/credbroker is built.
const repoRoot = "../../.."

// scrape is what one /metrics scrape exported: each family's label names
// and type.
type scrape struct {
	labels map[string][]string
	types  map[string]string
}

// family maps a sample name (a histogram's _bucket, _sum, _count too) to
// its family.
func (s scrape) family(name string) (string, bool) {
	if _, ok := s.labels[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && s.types[base] == "HISTOGRAM" {
			return base, true
		}
	}
	return "", false
}

func (s scrape) hasLabel(fam, label string) bool {
	if label == "le" && s.types[fam] == "HISTOGRAM" {
		return true
	}
	return slices.Contains(s.labels[fam], label)
}

// binary returns $CREDBROKER_E2E_BIN (make builds it for the e2e suites) or
// builds cmd/credbroker.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CREDBROKER_E2E_BIN"); p != "" {
		return p
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "credbroker")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/credbroker")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/credbroker: %v\n%s", err, b)
	}
	return out
}

// freePort returns a loopback port that was free a moment ago, never one
// it returned before (a port released can come back from the next pick).
func freePort(t *testing.T) int {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !issuedPorts[port] || len(held) >= 100 {
			l.Close()
			issuedPorts[port] = true
			return port
		}
		held = append(held, l)
	}
}

var issuedPorts = map[int]bool{} // freePort's; the tests that use it are not parallel

// closedPort returns a loopback port that refuses connections until the
// test ends: a socket is bound to it (without SO_REUSEADDR) and does not
// listen, so no other socket can take it either.
func closedPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

func start(t *testing.T, name string, args ...string) *gexec.Session {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	s, err := gexec.Start(cmd, gexec.NewPrefixedWriter("["+name+"] ", io.Discard), gexec.NewPrefixedWriter("["+name+"] ", io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Terminate()
		select {
		case <-s.Exited:
		case <-time.After(40 * time.Second):
			s.Kill()
			<-s.Exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, s.Err.Contents())
		}
	})
	return s
}

// rawRequest sends request on a fresh connection and returns the status.
func rawRequest(g Gomega, addr, request string) int {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = io.WriteString(c, request)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

// scrapeRunningSidecar runs `credbroker mock` and `credbroker run` with a
// route, a token API, an inbound guard and two certificates (one paired,
// one never), drives traffic that makes every credbroker series appear
// (successes, refusals of each kind, a background refresh) and returns the
// scrape.
func scrapeRunningSidecar(t *testing.T) scrape {
	t.Helper()
	g := NewWithT(t)
	bin := binary(t)
	dir := t.TempDir()
	mockDir := filepath.Join(dir, "mock")
	start(t, "mock", bin, "mock", "--dir", mockDir, "--token-ttl", "8s")
	g.Eventually(func() error { _, err := os.Stat(filepath.Join(mockDir, "mock.json")); return err }, 60*time.Second, 50*time.Millisecond).Should(Succeed())

	// The egress upstream (its certificate joins the CA bundle) and an app
	// address nobody listens on for the inbound guard.
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	mockCA, err := os.ReadFile(filepath.Join(mockDir, "ca.crt"))
	g.Expect(err).NotTo(HaveOccurred())
	bundle := append(mockCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})...)
	caFile := filepath.Join(dir, "ca.crt")
	g.Expect(os.WriteFile(caFile, bundle, 0o600)).To(Succeed())
	// Every token request of the x509 binding fails (503 from the mock):
	// its route answers 503 token-unavailable.
	var info struct {
		AdminURL string `json:"admin_url"`
	}
	data, err := os.ReadFile(filepath.Join(mockDir, "mock.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(json.Unmarshal(data, &info)).To(Succeed())
	g.Expect(info.AdminURL).To(HavePrefix("http://127.0.0.1:"))
	resp, err := http.Post(info.AdminURL+"/mock/faults", "application/json", strings.NewReader(`{"target":"certtoken","status":503}`))
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(BeNumerically("<", 300))
	deadApp := fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))

	// freePort's ports are free when it picks them, not for sure when
	// credbroker binds them (another package's test may take one in
	// between): a start that failed for that alone is made again on new
	// ports.
	var proxy, admin, inbound string
	for attempt := 1; ; attempt++ {
		proxy = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		inbound = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
ca_file: %s
max_token_keys: 1
max_connections: {inbound: 1}
token_api: {bindings: [xsuaa-secret]}
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true}
routes:
  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
  - {name: x509, upstream: %s/x509, auth: {type: bearer, binding: xsuaa-x509}}
inbound:
  listen: %s
  app: %s
  rules:
    - {path: /api/, accept: [jwt], binding: xsuaa-secret}
`, proxy, admin, caFile, filepath.Join(dir, "connector"), filepath.Join(mockDir, "pairing-url"),
			up.URL, up.URL, up.URL, inbound, deadApp)
		cfgFile := filepath.Join(dir, "credbroker.yaml")
		g.Expect(os.WriteFile(cfgFile, []byte(cfg), 0o600)).To(Succeed())
		s := start(t, "run", bin, "run", "--config", cfgFile, "--vcap-file", filepath.Join(mockDir, "vcap.json"))
		deadline := time.Now().Add(3 * time.Second) // until it listens or exits: a short look
		for time.Now().Before(deadline) && s.ExitCode() == -1 && !strings.Contains(string(s.Err.Contents()), "credbroker sidecar listening") {
			select {
			case <-s.Exited:
			case <-time.After(20 * time.Millisecond):
			}
		}
		if attempt < 5 && s.ExitCode() != -1 && strings.Contains(string(s.Err.Contents()), "address already in use") {
			t.Logf("a port was taken before credbroker bound it (attempt %d); starting again on new ports", attempt)
			continue
		}
		break
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status := func(u string) int { c, _ := get(u); return c }
	g.Eventually(func() int { c, _ := get("http://" + admin + "/healthz"); return c }, 60*time.Second, 100*time.Millisecond).Should(Equal(200))
	scrapeNow := func() (scrape, map[string]float64) {
		resp, err := client.Get("http://" + admin + "/metrics")
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		s := scrape{labels: map[string][]string{}, types: map[string]string{}}
		sums := map[string]float64{}
		for name, f := range fams {
			s.types[name] = f.GetType().String()
			var ls []string
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if !slices.Contains(ls, l.GetName()) {
						ls = append(ls, l.GetName())
					}
				}
				sums[name] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			s.labels[name] = ls
		}
		return s, sums
	}

	// Successes: a token fetch, a cache hit, a paired certificate.
	g.Eventually(func() int { c, _ := get("http://" + proxy + "/orders/a"); return c }, 60*time.Second, 200*time.Millisecond).Should(Equal(200))
	g.Expect(status("http://" + proxy + "/orders/b")).To(Equal(200))
	g.Expect(status("http://" + proxy + "/events/a")).To(Equal(200))
	// A credential error: the x509 binding's token server fails.
	g.Expect(status("http://" + proxy + "/x509/a")).To(Equal(503))
	// Refusals: egress, request head, token API, key bound, admin.
	g.Expect(status("http://" + proxy + "/nope/")).To(Equal(403))
	g.Expect(rawRequest(g, proxy, "GET /orders/a HTTP/1.1\nHost: 127.0.0.1\r\n\r\n")).To(Equal(400))
	g.Expect(status("http://" + proxy + "/.credbroker/v1/token")).To(Equal(400))
	code, body := get("http://" + proxy + "/.credbroker/v1/token?binding=xsuaa-secret")
	g.Expect(code).To(Equal(200))
	// New scope sets until the key bound answers.
	limited := false
	for i := 0; i < 4 && !limited; i++ {
		limited = status(fmt.Sprintf("http://%s/.credbroker/v1/token?binding=xsuaa-secret&scope=s%d", proxy, i)) == 429
	}
	g.Expect(limited).To(BeTrue(), "max_token_keys: 1 answers 429")
	g.Expect(rawRequest(g, admin, "GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n")).To(Equal(403))

	// The inbound guard: one connection at a time (max_connections.inbound).
	inboundOpen := func(n float64) {
		g.Eventually(func() float64 {
			resp, err := client.Get("http://" + admin + "/metrics")
			if err != nil {
				return -1
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			m := regexp.MustCompile(`credbroker_connections_open\{listener="inbound"\} (\S+)`).FindSubmatch(b)
			if m == nil {
				return 0
			}
			var v float64
			_, _ = fmt.Sscan(string(m[1]), &v)
			return v
		}, 30*time.Second, 50*time.Millisecond).Should(Equal(n))
	}
	inboundOpen(0)
	g.Expect(rawRequest(g, inbound, "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")).To(Equal(401))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	g.Expect(json.Unmarshal([]byte(body), &tok)).To(Succeed())
	inboundOpen(0)
	g.Expect(rawRequest(g, inbound, "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+tok.AccessToken+"\r\n\r\n")).To(Equal(502))
	inboundOpen(0)
	hold, err := net.Dial("tcp", inbound)
	g.Expect(err).NotTo(HaveOccurred())
	inboundOpen(1)
	g.Expect(rawRequest(g, inbound, "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")).To(Equal(503))
	g.Expect(hold.Close()).To(Succeed())

	// A background refresh (tokens live 8 s): keep using the token.
	g.Eventually(func() float64 {
		get("http://" + proxy + "/orders/c")
		_, sums := scrapeNow()
		return sums["credbroker_token_refreshes_total"]
	}, 90*time.Second, 500*time.Millisecond).Should(BeNumerically(">=", 1))
	// A heartbeat of the paired certificate.
	g.Eventually(func() float64 {
		_, sums := scrapeNow()
		return sums["credbroker_connector_heartbeat_results_total"]
	}, 90*time.Second, 500*time.Millisecond).Should(BeNumerically(">=", 1))

	s, _ := scrapeNow()
	return s
}
