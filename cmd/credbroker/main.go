// Command credbroker is a credential broker sidecar: it reads service
// bindings, fetches and caches OAuth tokens, keeps client certificates alive
// and injects credentials into an application's outbound calls.
//
// Run "credbroker help" for the list of commands.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
