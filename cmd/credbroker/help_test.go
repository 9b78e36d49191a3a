package main

import (
	"bytes"
	"flag"
	"io"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestUsageLinesListEveryFlag: the synopsis of each command names every
// flag the command takes, and its help lists each as --name.
func TestUsageLinesListEveryFlag(t *testing.T) {
	g := NewWithT(t)
	for name, c := range commands {
		fs, _, _ := newFlagSet(c, io.Discard)
		var h bytes.Buffer
		printCommandHelp(&h, c, fs)
		synopsis := regexp.MustCompile(`(?m)^Usage: .*$`).FindString(h.String())
		fs.VisitAll(func(f *flag.Flag) {
			re := regexp.MustCompile(`(^|[\s\[|])--` + regexp.QuoteMeta(f.Name) + `($|[\s\]|=])`)
			if !re.MatchString(synopsis) {
				t.Errorf("credbroker %s: the usage line lacks --%s", name, f.Name)
			}
			g.Expect(h.String()).To(MatchRegexp(`(?m)^  --`+regexp.QuoteMeta(f.Name)+`( |$)`), "credbroker %s --help lists --%s", name, f.Name)
		})
		g.Expect(h.String()).NotTo(MatchRegexp(`(?m)^\s+-[a-z]`), "credbroker %s --help shows single-dash flags", name)
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("CB_TEST_N", "many")
	var o testOpts
	err := parseEnv(&o)
	g.Expect(err).To(MatchError(`CB_TEST_N: want an integer, got "many"`))

	type durOpts struct {
		Group
		Wait time.Duration `env:"CB_TEST_WAIT"`
		On   bool          `env:"CB_TEST_ON"`
	}
	t.Setenv("CB_TEST_WAIT", "20")
	t.Setenv("CB_TEST_ON", "yes")
	var d durOpts
	err = parseEnv(&d)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(`CB_TEST_WAIT: want a duration with a unit, such as 20s, got "20"`))
	g.Expect(err.Error()).To(ContainSubstring(`CB_TEST_ON: want true/false, got "yes"`))
	g.Expect(err.Error()).NotTo(ContainSubstring("Wait"))
}

// TestCompletionScriptsCoverEveryFlag: each shell's script names every
// command and, for zsh and fish, every flag with its command.
func TestCompletionScriptsCoverEveryFlag(t *testing.T) {
	g := NewWithT(t)
	names, flags := completionModel()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out, errOut bytes.Buffer
		g.Expect(run([]string{"completion", shell}, &out, &errOut)).To(Equal(exitOK), errOut.String())
		for _, n := range names {
			g.Expect(out.String()).To(ContainSubstring(n), "%s: command %s", shell, n)
			for _, f := range flags[n] {
				want := map[string]string{"bash": "--" + f.name, "zsh": "'--" + f.name + "[", "fish": "__fish_seen_subcommand_from " + n + "' -l " + f.name + " "}[shell]
				g.Expect(out.String()).To(ContainSubstring(want), "%s: %s --%s", shell, n, f.name)
			}
		}
	}
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"completion", "tcsh"}, &out, &errOut)).To(Equal(exitInput))
	g.Expect(errOut.String()).To(ContainSubstring(`shell "tcsh": want bash, zsh or fish`))
}
