package charttest

import (
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// dockerfile is the image definition at the root of the repository.
const dockerfile = "../../../Dockerfile"

type stage struct {
	from         string
	instructions []string // upper-cased keyword + arguments, continuations joined
}

// parseStages splits a Dockerfile into its stages (comments dropped, lines
// ending in a backslash joined, runs of white space collapsed).
func parseStages(text string) []stage {
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		if line == "" {
			return
		}
		kw, rest, _ := strings.Cut(line, " ")
		kw = strings.ToUpper(kw)
		if kw == "FROM" {
			stages = append(stages, stage{from: rest})
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, kw+" "+strings.TrimSpace(rest))
		}
	}
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

func instructions(s stage, kw string) []string {
	var out []string
	for _, in := range s.instructions {
		if rest, ok := strings.CutPrefix(in, kw+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// TestDockerfile checks the image definition statically (no Docker engine is
// needed): a multi-stage build of a static binary, a minimal non-root runtime
// stage with CA certificates, and the binary as entrypoint.
func TestDockerfile(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(dockerfile)
	g.Expect(err).NotTo(HaveOccurred())
	stages := parseStages(string(data))
	g.Expect(len(stages)).To(BeNumerically(">=", 2), "multi-stage")

	build, final := stages[0], stages[len(stages)-1]
	g.Expect(build.from).To(MatchRegexp(`golang:`))
	g.Expect(build.from).To(MatchRegexp(`\bAS build$`))
	var goBuild string
	for _, run := range instructions(build, "RUN") {
		if strings.Contains(run, "go build") {
			goBuild = run
		}
	}
	g.Expect(goBuild).To(ContainSubstring("CGO_ENABLED=0"), "a static binary")
	g.Expect(goBuild).To(ContainSubstring("./cmd/credbroker"))
	g.Expect(goBuild).To(ContainSubstring("-trimpath"))

	// The runtime stage: distroless static (which carries CA certificates) or
	// scratch with the certificates copied in.
	g.Expect(final.from).To(Or(HavePrefix("gcr.io/distroless/static"), Equal("scratch")))
	copies := instructions(final, "COPY")
	if final.from == "scratch" {
		g.Expect(copies).To(ContainElement(ContainSubstring("ca-certificates.crt")))
	}
	g.Expect(copies).To(ContainElement(MatchRegexp(`^--from=build /out/credbroker `)))
	g.Expect(instructions(final, "RUN")).To(BeEmpty(), "nothing runs in the runtime stage")

	users := instructions(final, "USER")
	g.Expect(users).NotTo(BeEmpty())
	last := users[len(users)-1]
	g.Expect(last).To(MatchRegexp(`^[1-9][0-9]*(:[1-9][0-9]*)?$`), "a numeric non-root user, so runAsNonRoot can verify it")
	g.Expect(last).To(HavePrefix("65532"), "the UID the chart's securityContext runs as")

	g.Expect(instructions(final, "ENTRYPOINT")).To(Equal([]string{`["/usr/local/bin/credbroker"]`}))

	// The parser itself: a continuation is joined, a comment dropped.
	g.Expect(parseStages("FROM a AS b\n# c\nRUN x \\\n  y\n")).To(Equal([]stage{{from: "a AS b", instructions: []string{"RUN x y"}}}))
}
