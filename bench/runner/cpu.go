package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuNanos is the CPU time the processes (all their threads) have used,
// from /proc/PID/task/*/schedstat (nanoseconds, unlike the clock ticks of
// /proc/PID/stat).
func cpuNanos(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				total += n
			}
		}
	}
	return total
}

// childPIDs lists the direct children of pid (nginx's workers).
func childPIDs(pid int) []int {
	var kids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(strings.Fields(string(b))[0])
			kids = append(kids, n)
		}
	}
	return kids
}

// proxyPIDs are the processes whose CPU a target's requests cost: nginx's
// for the nginx targets, credbroker's for its routes, none for direct.
func (e *env) proxyPIDs(target string) []int {
	switch {
	case target == tracedTarget:
		return []int{e.traced.pid()}
	case target == fasthttpTarget && e.fasthttpPID != nil:
		return []int{e.fasthttpPID()}
	case strings.HasPrefix(target, "nginx"):
		return e.nginxPIDs()
	case strings.HasPrefix(target, "credbroker"):
		return []int{e.sidecarPID()}
	}
	return nil
}

// mallocs reads credbroker's go_memstats_mallocs_total (-1 for targets
// that are not credbroker or when it cannot be read).
func (e *env) mallocs(target string) int64 {
	if !strings.HasPrefix(target, "credbroker") {
		return -1
	}
	admin := e.adminURL
	if target == tracedTarget {
		admin = e.traced.admin
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int64(f)
		}
	}
	return -1
}

// instrResult is callgrind's count of instructions per request for one
// route.
type instrResult struct {
	route    string
	perReq   float64
	requests int
}

// measureInstructions runs `credbroker run` under valgrind's callgrind and
// counts the instructions credbroker executes (all threads, GOMAXPROCS=1)
// per request on each route: counters zeroed after a warm-up, N requests on
// four keep-alive connections, counters dumped. Instruction counts do not depend on what
// else the machine is doing, so they judge a change without noise.
func measureInstructions(ctx context.Context, o options, e *env) ([]instrResult, string) {
	if _, err := exec.LookPath("valgrind"); err != nil {
		return nil, "valgrind is not installed"
	}
	n := 2000
	if o.smoke {
		n = 50
	}
	dir, err := os.MkdirTemp("", "credbroker-callgrind-")
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(dir)
	// Stop the measured sidecar (same ports), run one under callgrind,
	// start the normal one again afterwards.
	_ = e.stopSidecar()
	defer func() { _, _ = e.restart(ctx) }()
	out := filepath.Join(dir, "callgrind.out")
	args := append([]string{"--tool=callgrind", "--callgrind-out-file=" + out + ".%p", "--dump-instr=no", "--collect-atstart=yes", e.bin}, e.runArgs...)
	cmd := exec.CommandContext(ctx, "valgrind", args...)
	// One P: under valgrind's serialised threads an idle second P spins
	// looking for work, and those instructions would be counted against
	// the requests.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1")
	cmd.Stdout, cmd.Stderr = logWriter("callgrind"), logWriter("callgrind")
	if err := cmd.Start(); err != nil {
		return nil, "valgrind: " + err.Error()
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitFor(ctx, "credbroker under callgrind", 120*time.Second, func() bool { return httpOK(e.adminURL + "/readyz") }); err != nil {
		return nil, err.Error()
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	var res []instrResult
	for _, t := range e.targets {
		route, ok := strings.CutPrefix(t.name, "credbroker-")
		if !ok || t.name == tracedTarget { // another process: not the one under callgrind
			continue
		}
		addr, path := splitURL(t.url)
		if err := getN(ctx, addr, path, 100); err != nil { // warm: connections, token, TLS
			return nil, fmt.Sprintf("%s warm-up under callgrind: %v", t.name, err)
		}
		if b, err := exec.CommandContext(ctx, "callgrind_control", "--zero", pid).CombinedOutput(); err != nil {
			return nil, fmt.Sprintf("callgrind_control --zero: %v: %s", err, b)
		}
		// Four connections at once keep the process busy, so that idle
		// scheduling is not what is counted.
		errs := make(chan error, 4)
		for range 4 {
			go func() { errs <- getN(ctx, addr, path, n/4) }()
		}
		for range 4 {
			if err := <-errs; err != nil {
				return nil, fmt.Sprintf("%s under callgrind: %v", t.name, err)
			}
		}
		if b, err := exec.CommandContext(ctx, "callgrind_control", "--dump="+route, pid).CombinedOutput(); err != nil {
			return nil, fmt.Sprintf("callgrind_control --dump: %v: %s", err, b)
		}
		ir, err := lastDumpTotal(out + "." + pid)
		if err != nil {
			return nil, err.Error()
		}
		res = append(res, instrResult{route: route, perReq: float64(ir) / float64(n/4*4), requests: n / 4 * 4})
	}
	return res, ""
}

// lastDumpTotal reads the "totals:" (or "summary:") of the newest dump
// file of a callgrind run.
func lastDumpTotal(prefix string) (int64, error) {
	files, _ := filepath.Glob(prefix + "*")
	var newest string
	var when time.Time
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && !st.ModTime().Before(when) {
			newest, when = f, st.ModTime()
		}
	}
	if newest == "" {
		return 0, fmt.Errorf("no callgrind dump under %s", prefix)
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range []string{"totals:", "summary:"} {
			if v, ok := strings.CutPrefix(line, p); ok {
				return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no totals line", newest)
}

func splitURL(u string) (addr, path string) {
	rest := strings.TrimPrefix(u, "http://")
	i := strings.IndexByte(rest, '/')
	return rest[:i], rest[i:]
}

// getN sends n GET requests on one keep-alive connection and reads each
// response (Content-Length bodies).
func getN(ctx context.Context, addr, path string, n int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Duration(n)*50*time.Millisecond + 30*time.Second))
	br := bufio.NewReader(c)
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n")
	for i := 0; i < n; i++ {
		if _, err := c.Write(req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	return nil
}
