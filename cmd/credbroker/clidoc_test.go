package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"testing"

	. "github.com/onsi/gomega"
)

// cliDocPath is the command-line reference generated from --help.
const cliDocPath = "../../docs/cli.md"

// renderCLIDoc is docs/cli.md: the main help and every command's --help,
// exactly as the binary prints them.
func renderCLIDoc() []byte {
	var b bytes.Buffer
	b.WriteString("# Command-line reference\n\n")
	b.WriteString("Generated from `credbroker --help` and each command's `--help` by `make docs`; a unit test\n")
	b.WriteString("fails while this file differs from what the binary prints. What the commands do and print:\n")
	b.WriteString("[commands.md](commands.md).\n\n```\n")
	var main bytes.Buffer
	printMainHelp(&main)
	b.Write(main.Bytes())
	b.WriteString("```\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fs, _, _ := newFlagSet(c, io.Discard)
		var h bytes.Buffer
		printCommandHelp(&h, c, fs)
		fmt.Fprintf(&b, "\n## credbroker %s\n\n```\n%s```\n", n, h.String())
	}
	return b.Bytes()
}

// TestCLIDocIsCurrent fails when docs/cli.md is stale; UPDATE_CLI_DOC=1
// (what `make docs` sets) rewrites it.
func TestCLIDocIsCurrent(t *testing.T) {
	g := NewWithT(t)
	want := renderCLIDoc()
	if os.Getenv("UPDATE_CLI_DOC") == "1" {
		g.Expect(os.WriteFile(cliDocPath, want, 0o644)).To(Succeed())
		return
	}
	got, err := os.ReadFile(cliDocPath)
	g.Expect(err).NotTo(HaveOccurred(), "docs/cli.md is missing: run make docs")
	g.Expect(string(got)).To(Equal(string(want)), "docs/cli.md is stale: run make docs")
}
