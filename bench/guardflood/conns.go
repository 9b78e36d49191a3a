package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// connResult is the idle-connection flood of issue 15 (item 12): many
// client connections to the proxy listener, each sending one request and
// then idling, while one connection opened before the flood keeps sending
// requests.
type connResult struct {
	conns             int
	idle, peak, after int64
	served, refused   int
	otherAnswers      int
	appOK, appSent    int
	recovered         bool
}

// runConnFlood starts `credbroker run` with a none route to an in-process
// upstream and floods its proxy listener with n idle keep-alive connections.
func runConnFlood(o options, n int) (connResult, error) {
	res := connResult{conns: n}
	dir, err := os.MkdirTemp("", "connflood")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = up.Serve(upLn) }()
	defer up.Close()
	proxy := freePort()
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin_listen: 127.0.0.1:%d\nroutes:\n  - {name: open, upstream: http://%s, auth: {type: none}}\n",
		proxy, freePort(), upLn.Addr())
	pid, stop, err := startRun(o.credbroker, dir, cfg)
	if err != nil {
		return res, err
	}
	defer stop()
	hostport := fmt.Sprintf("127.0.0.1:%d", proxy)

	// The app's connection, opened before the flood and kept alive.
	var app net.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		app, err = net.Dial("tcp", hostport)
		if err == nil {
			if code, rerr := roundTrip(app, hostport); rerr == nil && code == 200 {
				break
			}
			app.Close()
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the proxy did not answer within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer app.Close()
	res.idle = vmRSS(pid)

	stopSampling := samplePeak(pid, res.idle)

	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
			if err != nil {
				mu.Lock()
				res.otherAnswers++
				mu.Unlock()
				return
			}
			code, err := roundTrip(c, hostport)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && code == 200:
				res.served++
				held = append(held, c) // stays open and idle
				return
			case err == nil && code == 503, err != nil:
				res.refused++ // 503 connection-limit, or closed at once
			default:
				res.otherAnswers++
			}
			c.Close()
		}()
		// The app's requests go on during the flood.
		if i%(n/20+1) == 0 {
			res.appSent++
			if code, err := roundTrip(app, hostport); err == nil && code == 200 {
				res.appOK++
			}
		}
	}
	wg.Wait()
	for k := 0; k < 5; k++ {
		res.appSent++
		if code, err := roundTrip(app, hostport); err == nil && code == 200 {
			res.appOK++
		}
	}
	res.peak = stopSampling()
	for _, c := range held {
		c.Close()
	}
	// Recovery: a new connection is served once the flood has closed.
	rdeadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(rdeadline) {
		if c, err := net.Dial("tcp", hostport); err == nil {
			code, err := roundTrip(c, hostport)
			c.Close()
			if err == nil && code == 200 {
				res.recovered = true
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.after = vmRSS(pid)
	return res, nil
}

// roundTrip sends one GET on c and reads the answer.
func roundTrip(c net.Conn, hostport string) (int, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, "GET /open/x HTTP/1.1\r\nHost: "+hostport+"\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func renderConns(r connResult) string {
	var sb strings.Builder
	sb.WriteString("\n### Proxy listener under an idle-connection flood (bench/guardflood)\n\n")
	sb.WriteString("Each flood connection sends one request through a `none` route and then stays open and idle; a connection opened before the flood keeps sending requests. Default `max_connections.proxy` (512). VmRSS of the `credbroker run` process from /proc.\n\n")
	sb.WriteString("| connections | served and held | refused at the cap | other | VmRSS idle | VmRSS peak | VmRSS after | app connection OK | new connection after the flood |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	rec := "served"
	if !r.recovered {
		rec = "**refused**"
	}
	fmt.Fprintf(&sb, "| %d | %d | %d | %d | %s | %s | %s | %d/%d | %s |\n", r.conns, r.served, r.refused, r.otherAnswers,
		mib(r.idle), mib(r.peak), mib(r.after), r.appOK, r.appSent, rec)
	return sb.String()
}
