// Command guardflood measures the resident memory of `credbroker run` while
// its inbound guard is under the slow-body attack of issue 15 (item 3):
// many connections to an oauth1 rule, each announcing a large body and
// sending all of it but the last byte, then waiting. Signed requests go
// through the guard at the same time and must all succeed.
//
// For each scenario it starts the real binary (plain-HTTP inbound listener
// in front of a small in-process app), reads VmRSS from /proc when idle,
// samples it during the attack and reports the peak, how the guard
// answered the attack connections, and how many signed requests
// succeeded. Scenarios:
//
//   - issue: the attack as published: --conns connections, a
//     --size body announced (default 10 MiB), the known consumer key with
//     a forged signature, JSON content type;
//   - form-at-limit: the worst an attacker who knows the consumer key can
//     do to the bounded guard: form-encoded bodies (the signature covers
//     them, so they are read before it can be checked) of just under
//     --form-size (default 1 MiB, the default limits.max_body).
//
// A third scenario floods the proxy listener with idle keep-alive
// connections (issue 15, item 12: 4,000 of them; 100 with --smoke) and
// reports the same figures, whether the app's connection opened before
// kept working, and whether a new connection is served once the flood is
// gone.
//
// Usage (bench/run.sh runs it after the proxy benchmarks; --smoke is the tiny run for
// make bench-smoke):
//
//	go build -o bin/credbroker ./cmd/credbroker
//	go run ./bench/guardflood --credbroker bin/credbroker [--smoke] [--out FILE]
//
// It prints a Markdown table (to --out, else stdout) and exits 1 when a
// signed request failed during an attack.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/oauth1"
)

const (
	consumerKey    = "guardflood-consumer"
	consumerSecret = "guardflood-secret-not-a-real-one"
)

type options struct {
	credbroker string
	smoke      bool
	conns      int
	size       int
	formSize   int
	hold       time.Duration
	legit      int
	limits     string
	out        string
}

func main() {
	var o options
	flag.StringVar(&o.credbroker, "credbroker", "bin/credbroker", "the credbroker binary to measure (built without -race)")
	flag.BoolVar(&o.smoke, "smoke", false, "a tiny run that checks the harness works")
	flag.IntVar(&o.conns, "conns", 40, "attack connections per scenario")
	flag.IntVar(&o.size, "size", 10<<20, "body size the issue scenario announces (bytes)")
	flag.IntVar(&o.formSize, "form-size", 1<<20, "body size the form-at-limit scenario announces (bytes)")
	flag.DurationVar(&o.hold, "hold", 20*time.Second, "how long an attack connection waits for an answer before it gives up")
	flag.IntVar(&o.legit, "legit", 200, "signed requests sent during each attack")
	flag.StringVar(&o.limits, "limits", "", "YAML flow mapping for inbound.limits (empty: the binary's defaults; an old binary knows no limits)")
	flag.StringVar(&o.out, "out", "", "write the report here (default stdout)")
	flag.Parse()
	if o.smoke {
		o.conns, o.size, o.formSize, o.hold, o.legit = 4, 1<<20, 64<<10, 5*time.Second, 10
		if o.limits == "" {
			o.limits = "body_timeout: 2s"
		}
	}
	var rows []result
	for _, sc := range []scenario{
		{name: "issue", ctype: "application/json", size: o.size},
		{name: "form-at-limit", ctype: "application/x-www-form-urlencoded", size: o.formSize - 1},
	} {
		r, err := runScenario(o, sc)
		if err != nil {
			fatalf("%s: %v", sc.name, err)
		}
		rows = append(rows, r)
	}
	nconns := 4000
	if o.smoke {
		nconns = 100
	}
	cr, err := runConnFlood(o, nconns)
	if err != nil {
		fatalf("connection flood: %v", err)
	}
	report := render(o, rows) + renderConns(cr)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			fatalf("%v", err)
		}
	} else {
		fmt.Print(report)
	}
	if cr.appOK != cr.appSent || !cr.recovered {
		fatalf("connection flood: the app's connection answered %d of %d, new connection after the flood served: %v", cr.appOK, cr.appSent, cr.recovered)
	}
	for _, r := range rows {
		if r.legitOK != r.legitSent {
			fatalf("%s: %d of %d signed requests failed during the attack", r.name, r.legitSent-r.legitOK, r.legitSent)
		}
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "guardflood: "+format+"\n", a...)
	os.Exit(1)
}

type scenario struct {
	name  string
	ctype string
	size  int
}

type result struct {
	name               string
	conns, size        int
	idle, peak, after  int64
	answers            map[string]int
	legitSent, legitOK int
	attackDur          time.Duration
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func runScenario(o options, sc scenario) (result, error) {
	res := result{name: sc.name, conns: o.conns, size: sc.size, answers: map[string]int{}}
	dir, err := os.MkdirTemp("", "guardflood")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	// The app: reads what it is given, answers 200.
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = app.Serve(appLn) }()
	defer app.Close()

	for name, v := range map[string]string{"key": consumerKey, "secret": consumerSecret} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			return res, err
		}
	}
	inbound := freePort()
	limits := ""
	if o.limits != "" {
		limits = "  limits: {" + o.limits + "}\n"
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
inbound:
  listen: 127.0.0.1:%d
  app: http://%s
%s  rules:
    - {path: /, accept: [oauth1], oauth1: {key_file: %s, secret_file: %s}}
`, freePort(), freePort(), inbound, appLn.Addr(), limits, filepath.Join(dir, "key"), filepath.Join(dir, "secret"))
	pid, stop, err := startRun(o.credbroker, dir, cfg)
	if err != nil {
		return res, err
	}
	defer stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", inbound)
	hostport := strings.TrimPrefix(base, "http://")
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	signer, err := oauth1.NewSigner(consumerKey, consumerSecret)
	if err != nil {
		return res, err
	}
	signed := func(i int) (int, error) {
		var req *http.Request
		if i%2 == 0 {
			req, _ = http.NewRequest("POST", base+"/orders", strings.NewReader(fmt.Sprintf(`{"order":%d}`, i)))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req, _ = http.NewRequest("GET", fmt.Sprintf("%s/orders/%d", base, i), nil)
		}
		if err := signer.Sign(req); err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	// Ready and warm: a few signed requests, then the idle figure.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, err := signed(0)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the guard did not accept a signed request within 30s (last: %d %v)", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 1; i < 10; i++ {
		_, _ = signed(i)
	}
	res.idle = vmRSS(pid)

	stopSampling := samplePeak(pid, res.idle)

	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < o.conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answer := attack(hostport, sc, o.hold)
			mu.Lock()
			res.answers[answer]++
			mu.Unlock()
		}()
	}
	// Signed requests while the attack goes on.
	for i := 0; i < o.legit; i++ {
		res.legitSent++
		if code, err := signed(100 + i); err == nil && code == 200 {
			res.legitOK++
		}
	}
	wg.Wait()
	res.attackDur = time.Since(start)
	res.peak = stopSampling()
	res.after = vmRSS(pid)
	return res, nil
}

// attack sends one slow body and returns how the guard answered: its
// status code, or "held" when nothing came back within hold.
func attack(hostport string, sc scenario, hold time.Duration) string {
	conn, err := net.Dial("tcp", hostport)
	if err != nil {
		return "dial error"
	}
	defer conn.Close()
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	auth := fmt.Sprintf(`OAuth oauth_consumer_key="%s", oauth_signature_method="HMAC-SHA1", oauth_timestamp="%d", oauth_nonce="%x", oauth_version="1.0", oauth_signature="%s"`,
		consumerKey, time.Now().Unix(), nonce, oauth1.PercentEncode(base64.StdEncoding.EncodeToString(make([]byte, 20))))
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nAuthorization: %s\r\n\r\n",
		hostport, sc.ctype, sc.size, auth)
	if _, err := conn.Write([]byte(head)); err != nil {
		return "write error"
	}
	answer := make(chan string, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(hold))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answer <- "held"
			return
		}
		resp.Body.Close()
		answer <- strconv.Itoa(resp.StatusCode)
	}()
	chunk := []byte(strings.Repeat("a", 64<<10))
	for left := sc.size - 1; left > 0; left -= len(chunk) {
		if left < len(chunk) {
			chunk = chunk[:left]
		}
		if _, err := conn.Write(chunk); err != nil {
			break
		}
	}
	return <-answer
}

// startRun writes cfg to dir/credbroker.yaml and starts `credbroker run`
// on it; stop kills the process and waits for it.
func startRun(bin, dir, cfg string) (pid int, stop func(), err error) {
	cfgFile := filepath.Join(dir, "credbroker.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// samplePeak reads the VmRSS of pid every 10 ms until the returned
// function is called, which returns the highest value seen (at least from).
func samplePeak(pid int, from int64) (stop func() int64) {
	var peak atomic.Int64
	peak.Store(from)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v := vmRSS(pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-sampled
		return peak.Load()
	}
}

var rssRE = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`)

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := rssRE.FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func render(o options, rows []result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "### Inbound guard under the slow-body attack (bench/guardflood)\n\n")
	fmt.Fprintf(&sb, "Each attack connection announces a body, sends all of it but the last byte and waits up to %s; %d signed requests (JSON bodies and GETs) go through the guard meanwhile. VmRSS of the `credbroker run` process from /proc.\n\n", o.hold, o.legit)
	if o.limits != "" {
		fmt.Fprintf(&sb, "inbound.limits: `{%s}`\n\n", o.limits)
	}
	sb.WriteString("| scenario | connections | announced body | VmRSS idle | VmRSS peak | VmRSS after | guard's answers | signed requests OK | attack lasted |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		keys := make([]string, 0, len(r.answers))
		for k := range r.answers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s ×%d", k, r.answers[k])
		}
		fmt.Fprintf(&sb, "| %s | %d | %s | %s | %s | %s | %s | %d/%d | %s |\n", r.name, r.conns, mib(int64(r.size)),
			mib(r.idle), mib(r.peak), mib(r.after), strings.Join(parts, ", "), r.legitOK, r.legitSent, r.attackDur.Round(100*time.Millisecond))
	}
	return sb.String()
}
