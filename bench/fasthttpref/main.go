// Command fasthttpref is the benchmark's reference point, not part of
// credbroker: a minimal reverse proxy on valyala/fasthttp (its Server and
// HostClient) that does the baseline's job — set a fixed Authorization
// header and forward to one plain-HTTP upstream over keep-alive
// connections, 502 when the upstream fails. bench/runner measures it in the
// same interleaved run as credbroker and nginx, to show what a Go proxy on a
// zero-allocation HTTP/1.1 library costs on this machine. It is its own Go
// module so that credbroker's go.mod does not gain the dependency.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "host:port of the plain-HTTP upstream")
	token := flag.String("token", os.Getenv("FASTHTTPREF_TOKEN"), "the bearer token every request gets (default $FASTHTTPREF_TOKEN)")
	flag.Parse()
	if *token == "" {
		*token = "a-fixed-token-the-baseline-adds"
	}
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "fasthttpref: --upstream is required")
		os.Exit(2)
	}
	client := &fasthttp.HostClient{Addr: *upstream}
	auth := []byte("Bearer " + *token)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.Header.SetBytesV("Authorization", auth)
		req.SetHost(*upstream)
		if err := client.Do(req, &ctx.Response); err != nil {
			ctx.Error("upstream failed", fasthttp.StatusBadGateway)
		}
	}}
	if err := srv.ListenAndServe(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "fasthttpref:", err)
		os.Exit(1)
	}
}
