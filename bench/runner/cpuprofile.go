package main

// Where the CPU goes: the proxy's CPU time per request split into user and
// system time, and the system calls it makes per request by kind; and the
// fasthttp reference proxy measured beside credbroker and nginx (issue 16:
// the profile that shows what remains of the gap to nginx and why).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fasthttpTarget is the fasthttp reference proxy (bench/fasthttpref).
const fasthttpTarget = "fasthttp-ref"

// profiledTargets are the targets of the "Where the CPU goes" section, in
// the order of its columns.
var profiledTargets = []string{"credbroker-none", "credbroker-bearer", "nginx", fasthttpTarget}

// startFasthttpRef starts the reference proxy in front of the plain
// upstream with GOMAXPROCS=2, as credbroker runs, and returns its URL and
// process; an empty URL when no binary was given.
func startFasthttpRef(ctx context.Context, o options, upstream, token string, procs *procList) (url string, pid func() int, err error) {
	if o.fasthttp == "" {
		return "", nil, nil
	}
	bin, err := filepath.Abs(o.fasthttp)
	if err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--upstream", upstream)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2", "FASTHTTPREF_TOKEN="+token)
	cmd.Stderr, cmd.Stdout = logWriter(fasthttpTarget), logWriter(fasthttpTarget)
	if err := procs.start(cmd); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", fasthttpTarget, err)
	}
	url = fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitFor(ctx, fasthttpTarget, 10*time.Second, func() bool { return httpOK(url) }); err != nil {
		return "", nil, err
	}
	return url, func() int { return cmd.Process.Pid }, nil
}

// cpuTicks holds utime and stime (clock ticks) of each process.
type cpuTicks map[int][2]int64

// readCPUTicks reads utime and stime of the processes from
// /proc/PID/stat: every thread of the process, those that ended included.
func readCPUTicks(pids []int) cpuTicks {
	t := cpuTicks{}
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if u, s, ok := parseStatTimes(b); ok {
			t[pid] = [2]int64{u, s}
		}
	}
	return t
}

// parseStatTimes returns fields 14 (utime) and 15 (stime) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// hold spaces and parentheses, so the fields are counted from the last ')'.
func parseStatTimes(b []byte) (utime, stime int64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u, s, true
}

// perRequest is the user and system time per request, in µs, between t0
// and t1 (processes present in both), and the number of ticks counted.
func (t0 cpuTicks) perRequest(t1 cpuTicks, requests int64) (user, sys float64, ticks int64) {
	var du, ds int64
	for pid, a := range t0 {
		if b, ok := t1[pid]; ok {
			du += b[0] - a[0]
			ds += b[1] - a[1]
		}
	}
	if requests <= 0 {
		return 0, 0, du + ds
	}
	usPerTick := 1e6 / float64(clockTicks())
	return float64(du) * usPerTick / float64(requests), float64(ds) * usPerTick / float64(requests), du + ds
}

// clockTicks is the unit of utime and stime: sysconf(_SC_CLK_TCK), asked
// of getconf (no cgo here); 100, Linux's USER_HZ, when that fails.
var clockTicks = sync.OnceValue(func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
})

func userOf(s sample) float64 { return s.UserUS }
func sysOf(s sample) float64  { return s.SysUS }

// syscallKinds are the system calls counted one by one (the
// syscalls:sys_enter_<kind> tracepoints); raw_syscalls:sys_enter counts
// them all, and the rest is reported as "other".
var syscallKinds = []string{
	"read", "write", "readv", "writev", "recvfrom", "sendto", "getsockopt",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "nanosleep", "sched_yield",
	"tgkill", "rt_sigreturn",
}

const (
	allSyscalls     = "raw_syscalls:sys_enter"
	contextSwitches = "context-switches"
	cpuMigrations   = "cpu-migrations"
)

// syscallProfile is the perf stat phase: each profiled target once under
// wrk with its processes' system calls counted.
type syscallProfile struct {
	skipped  string // why it was not measured; empty when it was
	conns    int
	duration time.Duration
	kinds    []string // the kinds of syscallKinds whose tracepoints exist here
	rows     []syscallRow
}

type syscallRow struct {
	target   string
	requests int64
	counts   map[string]int64 // perf event -> count over the run
}

// perRequest is a perf event's count per request (-1 when not counted).
func (r syscallRow) perRequest(event string) float64 {
	n, ok := r.counts[event]
	if !ok || r.requests <= 0 {
		return -1
	}
	return float64(n) / float64(r.requests)
}

// other is the system calls per request that no counted kind covers.
func (r syscallRow) other(kinds []string) float64 {
	all := r.perRequest(allSyscalls)
	if all < 0 {
		return -1
	}
	for _, k := range kinds {
		if v := r.perRequest("syscalls:sys_enter_" + k); v > 0 {
			all -= v
		}
	}
	return all
}

// profileConns is the connection count the section reports: 16 when the
// run has it, else the largest.
func profileConns(conns []int) int {
	c := conns[len(conns)-1]
	for _, n := range conns {
		if n == 16 {
			return n
		}
		if n > c {
			c = n
		}
	}
	return c
}

// measureSyscalls runs wrk once against each profiled target under
// `perf stat -p <its processes>`. It never fails the bench: when perf is
// missing or refuses the tracepoints, the profile says why.
func measureSyscalls(ctx context.Context, o options, e *env) *syscallProfile {
	p := &syscallProfile{conns: profileConns(o.conns), duration: 3 * time.Second}
	if o.smoke {
		p.duration = time.Second
	}
	events, why := perfEvents(ctx)
	if why != "" {
		p.skipped = why
		logf("system calls per request not measured: %s", why)
		return p
	}
	for _, ev := range events {
		if k, ok := strings.CutPrefix(ev, "syscalls:sys_enter_"); ok {
			p.kinds = append(p.kinds, k)
		}
	}
	for _, name := range profiledTargets {
		url := ""
		for _, t := range e.targets {
			if t.name == name {
				url = t.url
			}
		}
		if url == "" {
			continue
		}
		row, err := perfWrk(ctx, events, e.proxyPIDs(name), url, p.conns, p.duration)
		if err != nil {
			p.skipped, p.rows = fmt.Sprintf("%s under perf stat: %v", name, err), nil
			logf("system calls per request not measured: %s", p.skipped)
			return p
		}
		row.target = name
		p.rows = append(p.rows, row)
		logf("perf stat c=%d %-18s %6.2f system calls/request", p.conns, name, row.perRequest(allSyscalls))
	}
	return p
}

// perfEvents is the list of perf events this machine lets us count, or why
// there are none: perf missing, or the system-call tracepoints refused
// (not root and kernel.perf_event_paranoid too high, no tracefs, …).
func perfEvents(ctx context.Context) ([]string, string) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, "perf is not installed (Debian's package linux-perf)"
	}
	want := []string{allSyscalls}
	for _, k := range syscallKinds {
		want = append(want, "syscalls:sys_enter_"+k)
	}
	want = append(want, contextSwitches, cpuMigrations)
	if perfCounts(ctx, want) == nil {
		return want, ""
	}
	// Some tracepoint is missing on this kernel: keep those that work.
	var ok []string
	for _, ev := range want {
		err := perfCounts(ctx, []string{ev})
		if ev == allSyscalls && err != nil {
			return nil, "perf stat cannot count " + allSyscalls + ": " + err.Error()
		}
		if err == nil {
			ok = append(ok, ev)
		}
	}
	return ok, ""
}

// perfCounts checks that perf counts the events for a trivial command.
func perfCounts(ctx context.Context, events []string) error {
	f, err := os.CreateTemp("", "credbroker-perf-probe-")
	if err != nil {
		return err
	}
	f.Close()
	defer os.Remove(f.Name())
	out, err := exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-o", f.Name(), "-e", strings.Join(events, ","), "--", "true").CombinedOutput()
	if err != nil {
		return errors.New(perfError(string(out), err.Error()))
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return err
	}
	counts, bad := parsePerfStat(b)
	for _, ev := range events {
		if _, ok := counts[ev]; !ok {
			if r, ok := bad[ev]; ok {
				return fmt.Errorf("%s: %s", ev, r)
			}
			return fmt.Errorf("%s: not in perf's output", ev)
		}
	}
	return nil
}

// perfWrk runs wrk under perf stat counting the events in the processes
// pids (not in wrk).
func perfWrk(ctx context.Context, events []string, pids []int, url string, conns int, d time.Duration) (syscallRow, error) {
	if len(pids) == 0 {
		return syscallRow{}, errors.New("no processes to count")
	}
	argv, err := wrkArgs(url, conns, d)
	if err != nil {
		return syscallRow{}, err
	}
	f, err := os.CreateTemp("", "credbroker-perf-")
	if err != nil {
		return syscallRow{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	args := append([]string{"stat", "-x", ",", "-o", f.Name(), "-e", strings.Join(events, ","), "-p", strings.Join(ps, ","), "--"}, argv...)
	cmd := exec.CommandContext(ctx, "perf", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return syscallRow{}, fmt.Errorf("%v: %s", err, perfError(errb.String(), ""))
	}
	s, err := parseWrk(out.Bytes())
	if err != nil {
		return syscallRow{}, err
	}
	if s.Non2xx > 0 || s.SocketErrors > 0 || s.Requests == 0 {
		return syscallRow{}, fmt.Errorf("%d requests, %d non-2xx, %d socket errors", s.Requests, s.Non2xx, s.SocketErrors)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return syscallRow{}, err
	}
	counts, bad := parsePerfStat(b)
	if _, ok := counts[allSyscalls]; !ok {
		return syscallRow{}, fmt.Errorf("%s not counted: %s", allSyscalls, bad[allSyscalls])
	}
	return syscallRow{requests: s.Requests, counts: counts}, nil
}

// parsePerfStat reads `perf stat -x ,` output: "value,unit,event,…" lines.
// counts has the events perf counted; bad those it printed without a count
// ("<not supported>", "<not counted>") with what it printed.
func parsePerfStat(b []byte) (counts map[string]int64, bad map[string]string) {
	counts, bad = map[string]int64{}, map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 3 || f[2] == "" {
			continue
		}
		ev := strings.TrimSuffix(f[2], ":u") // perf may add a modifier
		if n, err := strconv.ParseFloat(f[0], 64); err == nil {
			counts[ev] += int64(n)
		} else {
			bad[ev] = f[0]
		}
	}
	return counts, bad
}

// perfError is the line of perf's complaint that says why: its "Error:"
// line when it printed one, else its first line, else otherwise.
func perfError(out, otherwise string) string {
	first := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if e, ok := strings.CutPrefix(l, "Error:"); ok && strings.TrimSpace(e) != "" {
			return strings.TrimSpace(e)
		}
		if first == "" {
			first = l
		}
	}
	if first != "" {
		return first
	}
	return otherwise
}

// fasthttpIntro says what the fasthttp-ref target is, or why it is absent.
func (r *report) fasthttpIntro() string {
	if r.opts.fasthttp == "" {
		return "The fasthttp reference proxy (`fasthttp-ref`) is not in this run: the runner was given no `--fasthttp-ref` binary (bench/run.sh builds it from bench/fasthttpref, a separate Go module, and says so when that build fails).\n\n"
	}
	return "`fasthttp-ref` is a reference point, not credbroker: a minimal reverse proxy on valyala/fasthttp (bench/fasthttpref, its own Go module) whose handler sets the fixed `Authorization` header, sets the upstream host and calls a `fasthttp.HostClient` into the response (502 on error), run with `GOMAXPROCS=2` like credbroker. It shows what a Go proxy on a zero-allocation HTTP/1.1 library costs on this machine, in the same interleaved run; no target is judged on it.\n\n"
}

// writeCPUProfile is the "Where the CPU goes" section.
func (r *report) writeCPUProfile(w func(string, ...any)) {
	c := profileConns(r.opts.conns)
	var names []string
	for _, n := range profiledTargets {
		if _, ok := r.results[n][c]; ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	w("\n## Where the CPU goes\n\n")
	w("What each proxy's CPU time per request is made of, at %d connections. ", c)
	w("**User and system µs/request** come from the interleaved run above (the same wrk runs, medians over the rounds): the fields utime and stime of /proc/PID/stat of every process of the target (credbroker's one process with all its threads; nginx's master and workers), read before and after each wrk run, converted from clock ticks (1/%d s, `getconf CLK_TCK`) to µs and divided by the requests wrk completed. ", clockTicks())
	w("User time is the proxy's own code (for credbroker: its code and the Go runtime's); system time is the kernel working on its behalf — system calls, the loopback TCP stack, scheduling. ")
	w("Ticks are coarse: each run's user and system times are whole ticks per process, so the last column gives the fewest ticks any one run of the target counted, and the split is exact to about one tick in that many per process. ")
	w("CPU µs/request is the headline figure of the table above (schedstat, nanoseconds), repeated for comparison; user + system should be close to it.\n\n")
	w("| target | CPU µs/request | user µs/request | system µs/request | system share | clock ticks (fewest in one run) |\n|---|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		u, s := r.medianOf(n, c, userOf), r.medianOf(n, c, sysOf)
		share := 0.0
		if u+s > 0 {
			share = s / (u + s)
		}
		var fewest int64 = -1
		for _, x := range r.results[n][c] {
			if fewest < 0 || x.Ticks < fewest {
				fewest = x.Ticks
			}
		}
		w("| %s | %.1f | %.1f | %.1f | %.0f %% | %d |\n", n, r.medianOf(n, c, cpuOf), u, s, 100*share, fewest)
	}
	p := r.syscalls
	w("\n### System calls per request\n\n")
	if p == nil || p.skipped != "" {
		why := "the phase did not run"
		if p != nil {
			why = p.skipped
		}
		w("Not measured: %s.\n", why)
		r.writeCPUGap(w, c)
		return
	}
	w("A separate phase after the interleaved run: each target once, wrk for %s at %d connections, under `perf stat -p <the target's processes> -e raw_syscalls:sys_enter,syscalls:sys_enter_<kind>,…,context-switches,cpu-migrations -- wrk …`. ", p.duration, p.conns)
	w("perf counts the kernel's system-call entry tracepoints in the target's processes only (not in wrk), and each count is divided by the requests wrk completed in that run. ")
	w("\"all system calls\" is raw_syscalls:sys_enter, every system call of any kind; \"other\" is what the kinds listed do not cover. ")
	w("Counting slows each system call a little, so this phase's CPU times are not used; the counts do not depend on it. ")
	w("In the two Go proxies (credbroker, fasthttp-ref), epoll_pwait, futex, nanosleep, sched_yield, tgkill and rt_sigreturn come from the Go runtime (netpoller, scheduler, preemption), not from the proxy's own code; read, write, readv, writev, recvfrom and sendto are socket I/O.\n\n")
	w("| per request |")
	for _, row := range p.rows {
		w(" %s |", row.target)
	}
	w("\n|---|%s\n", strings.Repeat("---:|", len(p.rows)))
	line := func(label string, v func(syscallRow) float64) {
		w("| %s |", label)
		for _, row := range p.rows {
			if x := v(row); x < 0 {
				w(" – |")
			} else {
				w(" %.2f |", x)
			}
		}
		w("\n")
	}
	line("**all system calls**", func(row syscallRow) float64 { return row.perRequest(allSyscalls) })
	for _, k := range p.kinds {
		ev := "syscalls:sys_enter_" + k
		line(k, func(row syscallRow) float64 { return row.perRequest(ev) })
	}
	line("other", func(row syscallRow) float64 { return row.other(p.kinds) })
	line("context switches", func(row syscallRow) float64 { return row.perRequest(contextSwitches) })
	line("CPU migrations", func(row syscallRow) float64 { return row.perRequest(cpuMigrations) })
	w("| requests counted |")
	for _, row := range p.rows {
		w(" %d |", row.requests)
	}
	w("\n")
	r.writeCPUGap(w, c)
}

// writeCPUGap states, from the figures above, where each proxy's CPU time
// per request differs from nginx's.
func (r *report) writeCPUGap(w func(string, ...any), c int) {
	if _, ok := r.results["nginx"][c]; !ok {
		return
	}
	nu, ns := r.medianOf("nginx", c, userOf), r.medianOf("nginx", c, sysOf)
	var nginxCalls float64 = -1
	calls := map[string]float64{}
	if p := r.syscalls; p != nil && p.skipped == "" {
		for _, row := range p.rows {
			calls[row.target] = row.perRequest(allSyscalls)
		}
		if v, ok := calls["nginx"]; ok {
			nginxCalls = v
		}
	}
	first := true
	for _, n := range profiledTargets {
		if _, ok := r.results[n][c]; !ok || n == "nginx" {
			continue
		}
		if first {
			w("\nThe difference to nginx at %d connections, per request:\n\n", c)
			first = false
		}
		u, s := r.medianOf(n, c, userOf), r.medianOf(n, c, sysOf)
		w("- %s: user %+.1f µs, system %+.1f µs", n, noNegZero(u-nu, 0.05), noNegZero(s-ns, 0.05))
		if v, ok := calls[n]; ok && nginxCalls >= 0 && v >= 0 {
			w("; %.2f system calls against nginx's %.2f (%+.2f)", v, nginxCalls, noNegZero(v-nginxCalls, 0.005))
		}
		w(".\n")
	}
}

// noNegZero is x, or 0 when x would print as -0.0 at that precision.
func noNegZero(x, half float64) float64 {
	if x < 0 && x > -half {
		return 0
	}
	return x
}
