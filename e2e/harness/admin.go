package harness

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
)

// Get fetches u through Client and returns the status and the body, or 0
// and the error's text when the request failed (for Eventually).
func Get(u string) (int, []byte) {
	resp, err := Client.Get(u)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Metric returns the value of the first sample of admin's /metrics whose
// name and labels start with prefix (`credbroker_ready`,
// `go_goroutines`, `x_total{route="a"`), or -1.
func Metric(admin, prefix string) float64 {
	_, b := Get(admin + "/metrics")
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if ok && (strings.Contains(prefix, "{") || strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				return v
			}
		}
	}
	return -1
}
