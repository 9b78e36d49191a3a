package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// footprint holds resident memory and start-up figures.
type footprint struct {
	idleRSSKiB    int64
	loadRSSKiB    int64 // peak VmHWM-free sample: max VmRSS seen during the paced run
	loadRate      int
	loadSent      int64
	loadFailed    int64
	readyTimes    []time.Duration
	pacedDuration time.Duration
}

func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// measureFootprint restarts the sidecar to time readiness, then samples its
// RSS idle and under a paced load of `rate` requests per second.
func measureFootprint(ctx context.Context, o options, e *env, rep *report) error {
	fp := &footprint{loadRate: 1000, pacedDuration: 10 * time.Second}
	restarts := 5
	if o.smoke {
		fp.loadRate, fp.pacedDuration, restarts = 100, time.Second, 1
	}
	for i := 0; i < restarts; i++ {
		d, err := e.restart(ctx)
		if err != nil {
			return fmt.Errorf("restart for ready time: %w", err)
		}
		fp.readyTimes = append(fp.readyTimes, d)
	}
	// Let the fresh process settle, then read idle RSS.
	idle, err := rssKiB(e.sidecarPID())
	if err != nil {
		return err
	}
	fp.idleRSSKiB = idle

	url := ""
	for _, t := range e.targets {
		if t.name == "credbroker-bearer" {
			url = t.url
		}
	}
	var maxRSS int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if r, err := rssKiB(e.sidecarPID()); err == nil && r > maxRSS {
					maxRSS = r
				}
			}
		}
	}()
	sent, failed := paced(ctx, url, fp.loadRate, fp.pacedDuration)
	close(done)
	wg.Wait()
	fp.loadRSSKiB, fp.loadSent, fp.loadFailed = maxRSS, sent, failed
	if failed > 0 {
		return fmt.Errorf("paced load: %d of %d requests failed", failed, sent)
	}
	rep.footprint = fp
	return nil
}

// paced sends rate requests per second for d from a small pool of
// keep-alive connections, the way an app would.
func paced(ctx context.Context, url string, rate int, d time.Duration) (sent, failed int64) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	interval := time.Second / time.Duration(rate)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		next := start.Add(time.Duration(i) * interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			sent++
			if !ok {
				failed++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return sent, failed
}

// goBenchResult is the median of one Go benchmark over -count runs.
type goBenchResult struct {
	pkg, name   string
	nsPerOp     float64
	allocsPerOp float64
	bytesPerOp  float64
	extra       map[string]float64
	runs        int
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func runGoBenchmarks(ctx context.Context, o options) ([]goBenchResult, error) {
	count, benchtime := "5", "1s"
	if o.smoke {
		count, benchtime = "1", "100x"
	}
	pkgs := []string{"./tokenclient/", "./sidecar/...", "./oauth1/", "./vcap/", "./broker/", "./destination/"}
	// -p 1: one package's benchmarks at a time (go test runs as many
	// packages at once as there are CPUs, and nanosecond figures of one
	// measured while another package's benchmarks load the other core are
	// not its own).
	args := append([]string{"test", "-p", "1", "-run", "^$", "-bench", ".", "-benchmem", "-count", count, "-benchtime", benchtime}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	type key struct{ pkg, name string }
	samples := map[key][]map[string]float64{}
	var order []key
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/credbroker/credbroker/")
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		vals := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[f[i+1]] = v
			}
		}
		k := key{pkg, m[1]}
		if _, seen := samples[k]; !seen {
			order = append(order, k)
		}
		samples[k] = append(samples[k], vals)
	}
	var res []goBenchResult
	for _, k := range order {
		r := goBenchResult{pkg: k.pkg, name: k.name, runs: len(samples[k]), extra: map[string]float64{}}
		units := map[string][]float64{}
		for _, s := range samples[k] {
			for u, v := range s {
				units[u] = append(units[u], v)
			}
		}
		unitNames := make([]string, 0, len(units))
		for u := range units {
			unitNames = append(unitNames, u)
		}
		sort.Strings(unitNames)
		for _, u := range unitNames {
			v := median(units[u])
			switch u {
			case "ns/op":
				r.nsPerOp = v
			case "allocs/op":
				r.allocsPerOp = v
			case "B/op":
				r.bytesPerOp = v
			default:
				r.extra[u] = v
			}
		}
		res = append(res, r)
	}
	return res, nil
}
