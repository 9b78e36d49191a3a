// Package e2e holds the Ginkgo suites that drive the built credbroker binary
// against mockauth on 127.0.0.1. Each subdirectory is a suite; harness is
// their shared helper. Nothing outside e2e imports it.
package e2e
