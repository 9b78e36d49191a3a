// Command benchrunner measures credbroker's egress proxy against direct calls
// and nginx on one machine, over loopback, and writes docs/benchmarks.md.
//
// It hosts a fixed upstream (plain HTTP, and HTTPS that requires a client
// certificate), starts `credbroker mock`, pairs a client certificate with
// `credbroker pair`, starts nginx as a reverse proxy that adds a fixed
// Authorization header (the baseline), starts `credbroker run` with a bearer,
// an mtls and an oauth1 route, and drives each with wrk at several
// concurrency levels, interleaving the targets in every round so that drift
// on the machine hits them all alike. It reports medians over the rounds.
// bench/run.sh installs the tools and calls it; `--smoke` makes a tiny run
// that only proves the harness works.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type options struct {
	credbroker string
	smoke      bool
	out        string
	duration   time.Duration
	rounds     int
	conns      []int
	goBench    bool
	fasthttp   string // the fasthttp reference proxy (bench/fasthttpref); empty: not measured
}

func main() {
	var o options
	var conns string
	flag.StringVar(&o.credbroker, "credbroker", "bin/credbroker", "the credbroker binary to measure (built without -race)")
	flag.BoolVar(&o.smoke, "smoke", false, "a tiny run that checks the harness works; writes its report to a temporary file")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "the report to write")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one wrk run")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds; the report gives medians")
	flag.StringVar(&conns, "conns", "1,16,64", "wrk connection counts")
	flag.BoolVar(&o.goBench, "go-bench", true, "also run the Go benchmarks")
	flag.StringVar(&o.fasthttp, "fasthttp-ref", "", "the fasthttp reference proxy binary (bench/fasthttpref) to measure beside credbroker and nginx; empty: leave it out")
	flag.Parse()
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fatalf("--conns %q: want a comma-separated list of positive numbers", conns)
		}
		o.conns = append(o.conns, n)
	}
	if o.smoke {
		o.duration, o.rounds, o.conns = time.Second, 1, []int{4}
		o.out = filepath.Join(os.TempDir(), "credbroker-bench-smoke.md")
	}
	if err := run(o); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchrunner: "+format+"\n", a...)
	os.Exit(1)
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }

// target is one way of reaching the upstream.
type target struct {
	name string // direct, nginx, credbroker-bearer, …
	url  string
}

// sample is one wrk run.
type sample struct {
	Requests     int64 `json:"requests"`
	DurationUS   int64 `json:"duration_us"`
	SocketErrors int64 `json:"socket_errors"`
	Non2xx       int64 `json:"non2xx"`
	P50          int64 `json:"p50_us"`
	P90          int64 `json:"p90_us"`
	P99          int64 `json:"p99_us"`
	// CPUus is the proxy's CPU time per request (all its processes,
	// from /proc), Allocs credbroker's heap allocations per request (from
	// go_memstats_mallocs_total); filled in by the runner.
	CPUus  float64 `json:"-"`
	Allocs float64 `json:"-"`
	// UserUS and SysUS split the proxy's CPU time per request into user
	// and system time (utime and stime of /proc/PID/stat, cpuprofile.go);
	// Ticks is how many clock ticks the split rests on.
	UserUS, SysUS float64 `json:"-"`
	Ticks         int64   `json:"-"`
}

func (s sample) rps() float64 { return float64(s.Requests) / (float64(s.DurationUS) / 1e6) }

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "credbroker-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var procs procList
	defer procs.stopAll()

	env, err := setUp(ctx, o, tmp, &procs)
	if err != nil {
		return err
	}
	rep := &report{opts: o, started: time.Now(), cpus: runtime.NumCPU()}
	rep.versions = toolVersions()

	// Warm every target (connections, token cache, TLS sessions).
	for _, t := range env.targets {
		if _, err := wrk(ctx, t.url, 2, time.Second); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	rep.results = map[string]map[int][]sample{}
	for round := 0; round < o.rounds; round++ {
		for _, c := range o.conns {
			// Rotate the order each round so no target always runs first.
			n := len(env.targets)
			for i := 0; i < n; i++ {
				t := env.targets[(i+round)%n]
				pids := env.proxyPIDs(t.name)
				cpu0 := cpuNanos(pids)
				t0 := readCPUTicks(pids)
				m0 := env.mallocs(t.name)
				s, err := wrk(ctx, t.url, c, o.duration)
				if err != nil {
					return fmt.Errorf("%s at %d connections: %w", t.name, c, err)
				}
				if len(pids) > 0 && s.Requests > 0 {
					s.CPUus = float64(cpuNanos(pids)-cpu0) / 1e3 / float64(s.Requests)
					s.UserUS, s.SysUS, s.Ticks = t0.perRequest(readCPUTicks(pids), s.Requests)
				}
				if m1 := env.mallocs(t.name); m0 >= 0 && m1 >= m0 && s.Requests > 0 {
					s.Allocs = float64(m1-m0) / float64(s.Requests)
				}
				if s.Non2xx > 0 || s.SocketErrors > 0 || s.Requests == 0 {
					return fmt.Errorf("%s at %d connections: %d requests, %d non-2xx, %d socket errors", t.name, c, s.Requests, s.Non2xx, s.SocketErrors)
				}
				if rep.results[t.name] == nil {
					rep.results[t.name] = map[int][]sample{}
				}
				rep.results[t.name][c] = append(rep.results[t.name][c], s)
				logf("round %d/%d c=%d %-18s %8.0f req/s p50 %5dµs p99 %6dµs cpu %5.1fµs/req", round+1, o.rounds, c, t.name, s.rps(), s.P50, s.P99, s.CPUus)
			}
		}
	}
	rep.targets = env.targets
	rep.syscalls = measureSyscalls(ctx, o, env) // cpuprofile.go

	if err := measureFootprint(ctx, o, env, rep); err != nil {
		return err
	}
	rep.instr, rep.instrErr = measureInstructions(ctx, o, env)
	// The Go benchmarks measure nanoseconds: nothing of the rig (the
	// sidecars with their timers and span exporter, the mock, nginx, the
	// upstream) may run beside them.
	procs.stopAll()
	if o.goBench {
		rep.goBench, err = runGoBenchmarks(ctx, o)
		if err != nil {
			return err
		}
	}
	return rep.write(o.out)
}

// env is what setUp started.
type env struct {
	targets     []target
	runArgs     []string // how to start `credbroker run` again (for the ready-time measurement)
	runEnv      []string
	adminURL    string
	sidecarPID  func() int
	nginxPIDs   func() []int
	bin         string
	stopSidecar func() error
	restart     func(ctx context.Context) (time.Duration, error)
	traced      *tracedSidecar // tracing.go
	fasthttpPID func() int     // cpuprofile.go; nil when fasthttp-ref is not measured
	// baselineToken is the token nginx and fasthttp-ref add as their
	// fixed Authorization header: one of the bearer route's binding, so
	// they send what the bearer route sends.
	baselineToken string
}

// procList stops the processes it started, in reverse order.
type procList []*exec.Cmd

func (p *procList) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	*p = append(*p, cmd)
	return nil
}

func (p *procList) stopAll() {
	for i := len(*p) - 1; i >= 0; i-- {
		c := (*p)[i]
		if c.Process != nil && c.ProcessState == nil {
			_ = c.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = c.Process.Kill()
			}
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls until ok returns true or the deadline passes.
func waitFor(ctx context.Context, what string, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s", limit, what)
}

func httpOK(url string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func wrk(ctx context.Context, url string, conns int, d time.Duration) (sample, error) {
	argv, err := wrkArgs(url, conns, d)
	if err != nil {
		return sample{}, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("wrk: %v: %s", err, errb.String())
	}
	return parseWrk(out.Bytes())
}

// wrkArgs is the wrk command line (argv[0] = "wrk") for one run.
func wrkArgs(url string, conns int, d time.Duration) ([]string, error) {
	threads := 2
	if conns < threads {
		threads = conns
	}
	script, err := filepath.Abs("bench/report.lua")
	if err != nil {
		return nil, err
	}
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	argv := []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs) + "s", "--latency", "-s", script}
	if h := wrkHeaders[url]; h != "" {
		argv = append(argv, "-H", h)
	}
	return append(argv, url), nil
}

// wrkHeaders are header lines wrk sends to a target's URL (setUp): the
// direct call carries the bearer token the proxies add, as an app calling
// the upstream itself would, so that "added latency" compares the same
// request at the upstream.
var wrkHeaders = map[string]string{}

// parseWrk reads the JSON line bench/report.lua prints.
func parseWrk(out []byte) (sample, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "{") {
			var s sample
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				return sample{}, fmt.Errorf("wrk report %q: %w", line, err)
			}
			return s, nil
		}
	}
	return sample{}, errors.New("wrk printed no report line:\n" + string(out))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func toolVersions() map[string]string {
	v := map[string]string{"go": runtime.Version()}
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		v["nginx"] = strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
	}
	if out, err := exec.Command("wrk", "--version").CombinedOutput(); err == nil || len(out) > 0 {
		v["wrk"] = strings.Fields(string(out) + " unknown unknown")[1]
	}
	return v
}
