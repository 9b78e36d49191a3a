package tracing

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCredbrokerLinksNoGRPC keeps google.golang.org/grpc and grpc-gateway
// out of the credbroker binary. The official OTLP exporters link both
// whichever protocol is chosen; their package init functions and code pages
// cost credbroker run about 3.5 MiB of resident memory with tracing off
// (issue 16: at most 20 MiB idle). OTLP/gRPC is spoken by otlpClient over
// net/http's HTTP/2 instead.
func TestCredbrokerLinksNoGRPC(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "github.com/credbroker/credbroker/cmd/credbroker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the release builds it
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "google.golang.org/grpc") || strings.HasPrefix(p, "github.com/grpc-ecosystem/") ||
			strings.HasPrefix(p, "go.opentelemetry.io/proto/otlp/collector/") ||
			strings.HasPrefix(p, "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptrace") {
			t.Errorf("cmd/credbroker links %s", p)
		}
	}
}
