package bindings_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
)

// zshDriver types each line given after the binary into an interactive zsh
// on a pseudo-terminal (zsh/zpty) that loaded `BIN completion zsh`, presses
// Tab, then Enter, and prints the words of the completed line: credbroker
// is a shell function there that prints its arguments. zle drops what is
// typed before it reads a line, so each line waits for the bracketed-paste
// switch zle sends when it starts reading one.
const zshDriver = `zmodload zsh/zpty || exit 3
bin=$1; shift
zpty z zsh -f -i || exit 3
esc=$'\e'; ready="*${esc}\\[\\?2004h*"
zpty -w z "autoload -Uz compinit && compinit -u -D && source <(${(q)bin} completion zsh) && credbroker() { print -r -- \"WO\"\"RDS<\$*>\" } && print -r -- \"RE\"\"ADY\""
zpty -r z out '*READY*' || exit 4
zpty -r z out "$ready" || exit 4
for line in "$@"; do
  zpty -w -n z "$line"$'\t\r'
  zpty -r z out '*WORDS<*>*' || exit 5
  out=${out##*WORDS<}
  print -r -- "${out%%>*}"
  zpty -r z out "$ready" || exit 4
done
zpty -d z
`

// shell returns the path of a shell the completion test needs. Missing, the
// spec is skipped on a developer's machine and fails under CI=true: `make
// test` installs zsh and fish (scripts/shell-deps.sh).
func shell(name string) string {
	GinkgoHelper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			Fail("CI=true, but " + name + " is not installed: make shell-deps (scripts/shell-deps.sh) installs it")
		}
		Skip(name + " is not installed (make shell-deps installs it)")
	}
	return p
}

// Issue 18: the zsh and fish completion scripts, run by the shells
// themselves.
var _ = Describe("shell completion", func() {
	cases := []struct{ line, want string }{
		{"credbroker tok", "token"},
		{"credbroker valid", "validate"},
		{"credbroker token --gr", "token --grant"},
		{"credbroker token --grant jwt", "token --grant jwt-bearer"},
		{"credbroker run --allow", "run --allow-non-loopback"},
		{"credbroker validate --con", "validate --config"},
		{"credbroker completion f", "completion fish"},
	}

	It("completes commands, flags and --grant values in zsh", func() {
		zsh := shell("zsh")
		script := filepath.Join(GinkgoT().TempDir(), "drive.zsh")
		Expect(os.WriteFile(script, []byte(zshDriver), 0o600)).To(Succeed())
		args := []string{"-f", script, bin}
		for _, c := range cases {
			args = append(args, c.line)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, zsh, args...)
		cmd.Env = harness.Command(zsh, nil).Env // no CREDBROKER_* from the test's environment
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		want := make([]string, len(cases))
		for i, c := range cases {
			want[i] = c.want
		}
		Expect(got).To(Equal(want), "each line after Tab")
	})

	It("completes commands, flags and --grant values in fish", func() {
		fish := shell("fish")
		complete := func(line string) []string {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			script := `"$argv[1]" completion fish | source; complete -C "$argv[2]"`
			cmd := exec.CommandContext(ctx, fish, "--no-config", "-c", script, bin, line)
			cmd.Env = harness.Command(fish, nil).Env
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			var words []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				w, _, _ := strings.Cut(l, "\t") // candidate, tab, description
				words = append(words, w)
			}
			return words
		}
		Expect(complete("credbroker tok")).To(Equal([]string{"token"}))
		Expect(complete("credbroker valid")).To(Equal([]string{"validate"}))
		Expect(complete("credbroker token --gr")).To(Equal([]string{"--grant"}))
		Expect(complete("credbroker token --grant jwt")).To(Equal([]string{"jwt-bearer"}))
		Expect(complete("credbroker run --allow")).To(Equal([]string{"--allow-non-loopback"}))
		Expect(complete("credbroker validate --con")).To(Equal([]string{"--config"}))
		Expect(complete("credbroker completion ")).To(ConsistOf("bash", "zsh", "fish"))
	})
})
