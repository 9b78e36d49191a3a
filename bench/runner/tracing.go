package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// tracedTarget is the bearer route of a second `credbroker run` with
// tracing on at 1 % sampling.
const tracedTarget = "credbroker-bearer-traced"

// tracedSidecar is that second sidecar and the OTLP sink it exports to.
type tracedSidecar struct {
	url, admin string
	cmd        *exec.Cmd
	exports    *atomic.Int64 // OTLP requests the sink received
}

func (t *tracedSidecar) pid() int { return t.cmd.Process.Pid }

// otlpSink accepts OTLP/HTTP trace exports and discards them, counting
// the requests.
func otlpSink(n *atomic.Int64) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
		n.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

// startTraced starts the second sidecar: the same routes, tracing on with
// OTEL_TRACES_SAMPLER=parentbased_traceidratio and _ARG=0.01.
func startTraced(ctx context.Context, tmp, bin, plainAddr, tlsAddr, certDir, keyFile, secretFile, caBundle, vcapFile string, procs *procList) (*tracedSidecar, error) {
	t := &tracedSidecar{exports: new(atomic.Int64)}
	sink, err := otlpSink(t.exports)
	if err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(tmp, "credbroker-traced.yaml")
	if err := os.WriteFile(cfgFile, []byte(sidecarConfig(listen, admin, plainAddr, tlsAddr, certDir, keyFile, secretFile, caBundle)), 0o600); err != nil {
		return nil, err
	}
	t.url, t.admin = fmt.Sprintf("http://127.0.0.1:%d", listen), fmt.Sprintf("http://127.0.0.1:%d", admin)
	t.cmd = exec.CommandContext(ctx, bin, "run", "--config", cfgFile, "--vcap-file", vcapFile, "--log-level", "warn")
	t.cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(2),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+sink,
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.01")
	t.cmd.Stderr, t.cmd.Stdout = logWriter("credbroker-traced"), logWriter("credbroker-traced")
	if err := procs.start(t.cmd); err != nil {
		return nil, fmt.Errorf("start credbroker run (traced): %w", err)
	}
	if err := waitFor(ctx, "credbroker (traced) /readyz", 30*time.Second, func() bool { return httpOK(t.admin + "/readyz") }); err != nil {
		return nil, err
	}
	return t, nil
}

// writeTracing reports what tracing at 1 % sampling adds per request: the
// traced sidecar's bearer route against the untraced one, same run.
func (r *report) writeTracing(w func(string, ...any)) {
	if _, ok := r.results[tracedTarget]; !ok {
		return
	}
	w("\n## Tracing on at 1 %% sampling\n\n")
	w("A second `credbroker run` with the same routes and `OTEL_EXPORTER_OTLP_ENDPOINT` set (an OTLP/HTTP sink in the runner that discards), `OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.01`; wrk sends no traceparent, so 1 %% of the requests are recorded and exported. The requests the sampler records take net/http's path (the fast path carries no span); the others stay on the fast path with the traceparent of an unrecorded span. Interleaved with the other targets in every round.\n\n")
	w("| connections | bearer CPU µs/request | traced CPU µs/request | added CPU µs/request | allocs/request (traced) |\n|---:|---:|---:|---:|---:|\n")
	for _, c := range r.opts.conns {
		base, traced := r.medianOf("credbroker-bearer", c, cpuOf), r.medianOf(tracedTarget, c, cpuOf)
		w("| %d | %.1f | %.1f | %+.1f | %.1f |\n", c, base, traced, traced-base, r.medianOf(tracedTarget, c, allocsOf))
	}
}
