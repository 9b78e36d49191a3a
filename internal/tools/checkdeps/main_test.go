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
		{"sidecar composes leaves", pkg{ImportPath: m("sidecar"), Imports: []string{m("vcap"), m("tokenclient"), m("certwatch"), m("connector"), m("oauth1")}}, 0},
		{"anyone to e2e", pkg{ImportPath: m("sidecar"), TestImports: []string{m("e2e/harness")}}, 1},
		{"e2e to its harness", pkg{ImportPath: m("e2e/sidecar"), Imports: []string{m("e2e/harness"), m("mockauth")}}, 0},
		{"anyone to cmd", pkg{ImportPath: m("e2e/sidecar"), Imports: []string{m("cmd/credbroker")}}, 1},
		{"cmd composes everything", pkg{ImportPath: m("cmd/credbroker"), Imports: []string{m("sidecar"), m("mockauth"), m("vcap")}}, 0},
		{"testpki to module", pkg{ImportPath: m("internal/testpki"), Imports: []string{m("vcap")}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(check([]pkg{tc.p})).To(HaveLen(tc.bad))
		})
	}
}
