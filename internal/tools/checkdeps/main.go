// Command checkdeps enforces the import rules of DESIGN.md: the leaf
// packages do not import each other, sidecar declares the ports it consumes
// and the composition package (broker) adapts the leaves to them, only
// programs import the composition package, cmd/credbroker stays thin (no
// certificate lifecycle or guard wiring of its own), mockauth imports no
// production package, testpki is for tests only, and nothing imports e2e or
// cmd. It exits 1 and names every forbidden edge.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

const module = "github.com/credbroker/credbroker"

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

var leaves = map[string]bool{"vcap": true, "tokenclient": true, "connector": true, "certwatch": true, "oauth1": true, "destination": true}

// composition is the package that wires the leaves into sidecar's ports.
const composition = "broker"

// adapted are the leaves sidecar never imports: the composition package
// adapts them to the interfaces sidecar declares.
var adapted = map[string]bool{"tokenclient": true, "connector": true, "certwatch": true}

// programs may import the composition package.
var programs = map[string]bool{"cmd": true, "e2e": true, "bench": true, "examples": true, composition: true}

// rel turns a module import path into its path inside the module; ok is false
// for the standard library and third-party packages.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	if strings.HasPrefix(path, module+"/") {
		return strings.TrimPrefix(path, module+"/"), true
	}
	return "", false
}

func top(r string) string {
	if i := strings.Index(r, "/"); i >= 0 {
		return r[:i]
	}
	return r
}

// violation explains why from may not import to (bench and e2e are test
// tools: they may use internal/testpki) (both module-relative), or
// returns "" when the edge is allowed. test is true for test-only imports.
func violation(from, to string, test bool) string {
	fromTop, toTop := top(from), top(to)
	if from == to || strings.HasPrefix(to, from+"/") && fromTop == "internal" {
		return ""
	}
	switch {
	case toTop == "e2e" && fromTop != "e2e":
		return "nothing imports e2e"
	case toTop == "cmd":
		return "nothing imports cmd"
	case (to == "internal/testpki" || to == "internal/clock/fakeclock") && !test && fromTop != "e2e" && fromTop != "bench":
		return to + " is for tests only"
	case to == "internal/testpki" || to == "internal/clock/fakeclock":
		return ""
	case strings.HasPrefix(to, "internal/tools"):
		return "internal/tools are programs, not libraries"
	case toTop == composition && !programs[fromTop]:
		return "only programs import the composition package; libraries declare the interfaces they consume"
	case from == "cmd/credbroker" && !test && (toTop == "certwatch" || to == "sidecar/guard"):
		return "cmd/credbroker is thin: certificate lifecycles and the guard are wired by the composition package"
	}
	switch {
	case from == "internal/testpki":
		return "testpki imports no module package"
	case fromTop == "mockauth":
		if toTop != "mockauth" {
			return "mockauth imports no production package (a fake must not share code with what it tests)"
		}
	case leaves[fromTop]:
		if toTop == fromTop {
			return ""
		}
		if leaves[toTop] {
			return "leaf packages do not import each other; declare the small interface you consume"
		}
		if toTop == "sidecar" {
			return "leaves do not import sidecar"
		}
		if toTop == "mockauth" && !test {
			return "production code does not import mockauth"
		}
	case fromTop == "sidecar":
		if toTop == "mockauth" && !test {
			return "production code does not import mockauth"
		}
		if adapted[toTop] {
			return "sidecar declares the ports it consumes; the composition package adapts " + toTop + " to them"
		}
	case fromTop == composition:
		if toTop == "mockauth" && !test {
			return "production code does not import mockauth"
		}
	}
	return ""
}

func check(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		edges := func(list []string, test bool) {
			for _, imp := range list {
				to, ok := rel(imp)
				if !ok {
					continue
				}
				if why := violation(from, to, test); why != "" {
					kind := "imports"
					if test {
						kind = "imports (in tests)"
					}
					out = append(out, fmt.Sprintf("%s %s %s: %s", from, kind, to, why))
				}
			}
		}
		edges(p.Imports, false)
		edges(append(append([]string{}, p.TestImports...), p.XTestImports...), true)
	}
	sort.Strings(out)
	return out
}

func decode(r io.Reader) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(r)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

func main() {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "checkdeps: go list:", err)
		os.Exit(1)
	}
	pkgs, err := decode(&stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkdeps: decode go list output:", err)
		os.Exit(1)
	}
	if bad := check(pkgs); len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "checkdeps: forbidden imports:")
		for _, b := range bad {
			fmt.Fprintln(os.Stderr, "  "+b)
		}
		os.Exit(1)
	}
	fmt.Printf("checkdeps: %d packages, import rules hold\n", len(pkgs))
}
