package main

import (
	"bytes"
	"flag"
	"io"
	"testing"

	. "github.com/onsi/gomega"
)

type Group struct {
	Dir string `flag:"dir" env:"CB_TEST_DIR" usage:"a dir"`
}

type testOpts struct {
	Group
	Name   string   `flag:"name" env:"CB_TEST_NAME" usage:"a name" default:"def"`
	Scopes []string `flag:"scope" env:"CB_TEST_SCOPES" usage:"scopes"`
	N      int      `flag:"n" env:"CB_TEST_N" default:"3"`
}

func parse(t *testing.T, args ...string) testOpts {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o testOpts
	bindFlags(fs, &o)
	NewWithT(t).Expect(parseEnv(&o)).To(Succeed())
	NewWithT(t).Expect(fs.Parse(args)).To(Succeed())
	return o
}

func TestDefaultsThenEnvThenFlags(t *testing.T) {
	g := NewWithT(t)
	o := parse(t)
	g.Expect(o.Name).To(Equal("def"))
	g.Expect(o.N).To(Equal(3))

	t.Setenv("CB_TEST_NAME", "from-env")
	t.Setenv("CB_TEST_SCOPES", "a,b")
	t.Setenv("CB_TEST_DIR", "/env/dir")
	o = parse(t)
	g.Expect(o.Name).To(Equal("from-env"))
	g.Expect(o.Scopes).To(Equal([]string{"a", "b"}))
	g.Expect(o.Dir).To(Equal("/env/dir"), "embedded option groups read the environment")

	o = parse(t, "--name", "from-flag", "--scope", "c", "--scope", "d", "--dir", "/flag/dir")
	g.Expect(o.Name).To(Equal("from-flag"))
	g.Expect(o.Scopes).To(Equal([]string{"c", "d"}), "a repeated flag replaces the environment's list")
	g.Expect(o.Dir).To(Equal("/flag/dir"))
}

func TestExitCodesAndHelp(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"no-such-command"}, &out, &errOut)).To(Equal(exitInput))
	g.Expect(errOut.String()).To(ContainSubstring(`unknown command "no-such-command"`))

	out.Reset()
	g.Expect(run([]string{"version", "--help"}, &out, &errOut)).To(Equal(exitOK))
	g.Expect(out.String()).To(ContainSubstring("CREDBROKER_LOG_FORMAT"), "help names each flag's variable")

	errOut.Reset()
	g.Expect(run([]string{"version", "--no-such-flag"}, &out, &errOut)).To(Equal(exitInput))
	g.Expect(run([]string{"version", "--log-format", "xml"}, &out, &errOut)).To(Equal(exitInput))

	for _, arg := range []string{"version", "--version", "-version"} {
		out.Reset()
		g.Expect(run([]string{arg}, &out, &errOut)).To(Equal(exitOK), arg)
		g.Expect(out.String()).To(MatchRegexp(`^credbroker \S+ \(commit \S+, built \S+, go\S+\)\n$`), arg)
	}

	g.Expect(exitCode(badInputf("binding %q: field %q", "b", "f"))).To(Equal(exitInput))
	g.Expect(exitCode(io.EOF)).To(Equal(exitRuntime))
}
