package main

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestRules(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	for _, tc := range []struct {
		name string
		p    pkg
		bad  int
	}{
		{"leaf to leaf", pkg{ImportPath: m("tokenclient"), Imports: []string{m("vcap")}}, 1},
		{"leaf to stdlib and third party", pkg{ImportPath: m("tokenclient"), Imports: []string{"net/http", "golang.org/x/oauth2"}}, 0},
		{"leaf test to mockauth and testpki", pkg{ImportPath: m("tokenclient"), XTestImports: []string{m("mockauth"), m("internal/testpki")}}, 0},
		{"leaf production to mockauth", pkg{ImportPath: m("connector"), Imports: []string{m("mockauth")}}, 1},
		{"leaf test to other leaf", pkg{ImportPath: m("certwatch"), TestImports: []string{m("connector")}}, 1},
		{"mockauth to production", pkg{ImportPath: m("mockauth"), Imports: []string{m("oauth1")}}, 1},
		{"mockauth test to testpki", pkg{ImportPath: m("mockauth"), XTestImports: []string{m("internal/testpki")}}, 0},
		{"production to testpki", pkg{ImportPath: m("sidecar"), Imports: []string{m("internal/testpki")}}, 1},
		{"sidecar does not wire the adapted leaves", pkg{ImportPath: m("sidecar"), Imports: []string{m("vcap"), m("tokenclient"), m("certwatch"), m("connector"), m("oauth1")}}, 3},
		{"the guard verifies with oauth1 and vcap", pkg{ImportPath: m("sidecar/guard"), Imports: []string{m("vcap"), m("oauth1"), m("internal/pemx")}}, 0},
		{"sidecar test to the composition", pkg{ImportPath: m("sidecar"), XTestImports: []string{m("broker")}}, 1},
		{"the composition wires leaves into sidecar", pkg{ImportPath: m("broker"), Imports: []string{m("sidecar"), m("sidecar/guard"), m("vcap"), m("tokenclient"), m("certwatch"), m("connector"), m("oauth1"), m("internal/trust")}}, 0},
		{"the composition's tests use mockauth", pkg{ImportPath: m("broker"), TestImports: []string{m("mockauth"), m("internal/testpki")}}, 0},
		{"the composition in production to mockauth", pkg{ImportPath: m("broker"), Imports: []string{m("mockauth")}}, 1},
		{"a leaf to the composition", pkg{ImportPath: m("tokenclient"), Imports: []string{m("broker")}}, 1},
		{"cmd wires no certificate lifecycle", pkg{ImportPath: m("cmd/credbroker"), Imports: []string{m("certwatch"), m("sidecar/guard")}}, 2},
		{"cmd tests may read certificates", pkg{ImportPath: m("cmd/credbroker"), TestImports: []string{m("certwatch")}}, 0},
		{"anyone to e2e", pkg{ImportPath: m("sidecar"), TestImports: []string{m("e2e/harness")}}, 1},
		{"e2e to its harness", pkg{ImportPath: m("e2e/sidecar"), Imports: []string{m("e2e/harness"), m("mockauth")}}, 0},
		{"anyone to cmd", pkg{ImportPath: m("e2e/sidecar"), Imports: []string{m("cmd/credbroker")}}, 1},
		{"cmd runs the composition", pkg{ImportPath: m("cmd/credbroker"), Imports: []string{m("broker"), m("sidecar"), m("mockauth"), m("vcap")}}, 0},
		{"testpki to module", pkg{ImportPath: m("internal/testpki"), Imports: []string{m("vcap")}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(check([]pkg{tc.p})).To(HaveLen(tc.bad))
		})
	}
}
