package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStatTimes(t *testing.T) {
	// Fields 14 and 15 are utime and stime; the command name holds a space
	// and a ')', so only the last ')' ends it.
	line := []byte("4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 57 89 0 0 20 0 6 0 1234 0 0\n")
	u, s, ok := parseStatTimes(line)
	if !ok || u != 57 || s != 89 {
		t.Fatalf("parseStatTimes = %d, %d, %v; want 57, 89, true", u, s, ok)
	}
	for _, bad := range []string{"", "4242 no parenthesis 1 2 3", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 89 0"} {
		if _, _, ok := parseStatTimes([]byte(bad)); ok {
			t.Errorf("parseStatTimes(%q) accepted", bad)
		}
	}
}

func TestReadCPUTicksOfThisProcess(t *testing.T) {
	ticks := readCPUTicks([]int{os.Getpid(), -1})
	if _, ok := ticks[os.Getpid()]; !ok || len(ticks) != 1 {
		t.Fatalf("readCPUTicks = %v, want only this process", ticks)
	}
}

func TestCPUTicksPerRequest(t *testing.T) {
	t0 := cpuTicks{1: {10, 20}, 2: {5, 5}, 3: {1, 1}}
	// pid 2 ended (not counted), pid 4 started (not counted).
	t1 := cpuTicks{1: {110, 320}, 3: {2, 3}, 4: {1000, 1000}}
	user, sys, ticks := t0.perRequest(t1, 1000)
	us := 1e6 / float64(clockTicks())
	if ticks != 101+302 {
		t.Errorf("ticks = %d, want %d", ticks, 101+302)
	}
	if math.Abs(user-101*us/1000) > 1e-9 || math.Abs(sys-302*us/1000) > 1e-9 {
		t.Errorf("user, sys = %v, %v µs/request; want %v, %v", user, sys, 101*us/1000, 302*us/1000)
	}
	if noNegZero(-0.04, 0.05) != 0 || noNegZero(-0.06, 0.05) != -0.06 || noNegZero(0.04, 0.05) != 0.04 {
		t.Error("noNegZero")
	}
	if u, s, _ := t0.perRequest(t1, 0); u != 0 || s != 0 {
		t.Errorf("no requests: %v, %v, want 0, 0", u, s)
	}
}

// perfOutput is `perf stat -x , -o FILE` as perf 6.1 writes it.
const perfOutput = `# started on Sat Dec  5 03:22:03 2026

61000,,raw_syscalls:sys_enter,669156,100.00,,
30000,,syscalls:sys_enter_read,669156,100.00,,
20000,,syscalls:sys_enter_write,669156,100.00,,
<not counted>,,syscalls:sys_enter_futex,0,0.00,,
1200,,context-switches,669156,100.00,,
<not supported>,,cycles,0,100.00,,
`

func TestParsePerfStat(t *testing.T) {
	counts, bad := parsePerfStat([]byte(perfOutput))
	want := map[string]int64{allSyscalls: 61000, "syscalls:sys_enter_read": 30000, "syscalls:sys_enter_write": 20000, contextSwitches: 1200}
	if len(counts) != len(want) {
		t.Fatalf("counts = %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %d, want %d", k, counts[k], v)
		}
	}
	if bad["syscalls:sys_enter_futex"] != "<not counted>" || bad["cycles"] != "<not supported>" {
		t.Errorf("bad = %v", bad)
	}
	row := syscallRow{requests: 10000, counts: counts}
	if got := row.perRequest(allSyscalls); got != 6.1 {
		t.Errorf("all per request = %v, want 6.1", got)
	}
	if got := row.perRequest("syscalls:sys_enter_futex"); got != -1 {
		t.Errorf("uncounted futex per request = %v, want -1", got)
	}
	if got := row.other([]string{"read", "write", "futex"}); math.Abs(got-1.1) > 1e-9 {
		t.Errorf("other = %v, want 1.1", got)
	}
}

func TestProfileConns(t *testing.T) {
	for _, tc := range []struct {
		conns []int
		want  int
	}{{[]int{1, 16, 64}, 16}, {[]int{4}, 4}, {[]int{64, 1, 32}, 64}} {
		if got := profileConns(tc.conns); got != tc.want {
			t.Errorf("profileConns(%v) = %d, want %d", tc.conns, got, tc.want)
		}
	}
}

// fakePerf puts a `perf` on PATH that prints what perf prints when the
// kernel refuses its tracepoints, and exits 129 as perf does.
func fakePerf(t *testing.T, script string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "perf"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/usr/bin:/bin")
}

func TestPerfEventsSaysWhyNot(t *testing.T) {
	t.Run("not installed", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		ev, why := perfEvents(context.Background())
		if ev != nil || !strings.Contains(why, "perf is not installed") {
			t.Fatalf("perfEvents = %v, %q", ev, why)
		}
	})
	t.Run("tracepoints refused", func(t *testing.T) {
		fakePerf(t, `echo "event syntax error: 'raw_syscalls:sys_enter'" >&2
echo "Error:	No permissions to read /sys/kernel/tracing/events/raw_syscalls/sys_enter" >&2
exit 129
`)
		ev, why := perfEvents(context.Background())
		if ev != nil || !strings.Contains(why, "No permissions to read /sys/kernel/tracing/events/raw_syscalls/sys_enter") {
			t.Fatalf("perfEvents = %v, %q", ev, why)
		}
	})
	t.Run("one tracepoint missing", func(t *testing.T) {
		// Counts every event it is asked for except sys_enter_tgkill, which
		// this "kernel" lacks.
		fakePerf(t, `out=""; ev=""
while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift;; -e) ev=$2; shift;; esac; shift; done
case "$ev" in *tgkill*) echo "event syntax error: unknown tracepoint" >&2; exit 129;; esac
echo "# started" > "$out"
echo "$ev" | tr , '\n' | while read e; do echo "1,,$e,100,100.00,," >> "$out"; done
`)
		ev, why := perfEvents(context.Background())
		if why != "" {
			t.Fatalf("why = %q", why)
		}
		joined := "," + strings.Join(ev, ",") + ","
		if strings.Contains(joined, "tgkill") || !strings.Contains(joined, ","+allSyscalls+",") || !strings.Contains(joined, ",syscalls:sys_enter_read,") || !strings.Contains(joined, ","+cpuMigrations+",") {
			t.Fatalf("events = %v", ev)
		}
	})
}

// testReport is a report of one round at 16 connections with the targets
// the CPU profile is about, fasthttp-ref among them.
func testReport(withRef bool) *report {
	o := options{conns: []int{16}, rounds: 1, duration: time.Second}
	names := []string{"direct", "nginx", "credbroker-none", "credbroker-bearer"}
	if withRef {
		o.fasthttp = "bin/fasthttpref"
		names = append(names, fasthttpTarget)
	}
	r := &report{opts: o, started: time.Unix(0, 0), cpus: 2, versions: map[string]string{"go": "test"}, results: map[string]map[int][]sample{}}
	for i, n := range names {
		r.targets = append(r.targets, target{name: n, url: "http://127.0.0.1/" + n})
		r.results[n] = map[int][]sample{16: {{Requests: 100000, DurationUS: 1e6, P50: 500, P99: 2000,
			CPUus: 20 + float64(i), UserUS: 5 + float64(i), SysUS: 15, Ticks: 300 + int64(i)}}}
	}
	return r
}

func TestReportHasFasthttpRefAndCPUProfile(t *testing.T) {
	r := testReport(true)
	r.syscalls = &syscallProfile{conns: 16, duration: 3 * time.Second, kinds: []string{"read", "write"}}
	for _, n := range profiledTargets {
		r.syscalls.rows = append(r.syscalls.rows, syscallRow{target: n, requests: 1000, counts: map[string]int64{
			allSyscalls: 6100, "syscalls:sys_enter_read": 3000, "syscalls:sys_enter_write": 2000, contextSwitches: 100, cpuMigrations: 1}})
	}
	md, svg := writeTestReport(t, r)
	for _, want := range []string{
		"`fasthttp-ref` is a reference point",
		"| fasthttp-ref | 16 | 100000 | 1.00 | 24.0 | 21.0 |",
		"## Where the CPU goes",
		"| target | CPU µs/request | user µs/request | system µs/request | system share | clock ticks (fewest in one run) |",
		"| fasthttp-ref | 24.0 | 9.0 | 15.0 | 62 % | 304 |",
		"| per request | credbroker-none | credbroker-bearer | nginx | fasthttp-ref |",
		"| **all system calls** | 6.10 | 6.10 | 6.10 | 6.10 |",
		"| other | 1.10 | 1.10 | 1.10 | 1.10 |",
		"| requests counted | 1000 | 1000 | 1000 | 1000 |",
		"- fasthttp-ref: user +3.0 µs, system +0.0 µs; 6.10 system calls against nginx's 6.10 (+0.00).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "fasthttp-ref: CPU per request at most") {
		t.Error("fasthttp-ref is judged against a target; it is a reference only")
	}
	if !strings.Contains(svg, ">fasthttp-ref</text>") {
		t.Error("the chart has no fasthttp-ref bar")
	}
}

func TestReportSaysWhatWasNotMeasured(t *testing.T) {
	r := testReport(false)
	r.syscalls = &syscallProfile{skipped: "perf is not installed (Debian's package linux-perf)"}
	md, _ := writeTestReport(t, r)
	for _, want := range []string{
		"The fasthttp reference proxy (`fasthttp-ref`) is not in this run",
		"## Where the CPU goes",
		"Not measured: perf is not installed (Debian's package linux-perf).",
		"- credbroker-none: user +1.0 µs, system +0.0 µs.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "| per request |") {
		t.Error("a system-call table although perf did not run")
	}
}

func writeTestReport(t *testing.T, r *report) (md, svg string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := r.write(path); err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.ReadFile(strings.TrimSuffix(path, ".md") + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	return string(m), string(s)
}
