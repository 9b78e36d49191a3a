package bindings_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

// A secret pasted in the wrong place (a misspelt key, a value of the wrong
// type, a URL with user information, an OTEL_* variable) is refused by
// validate and run alike, and neither repeats it (docs/security.md).
var _ = Describe("credbroker validate and misplaced secrets", func() {
	var w *world
	BeforeEach(func() { w = newWorld() })
	loopback := []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}
	write := func(name, data string) string {
		p := filepath.Join(w.dir, name)
		Expect(os.WriteFile(p, []byte(data), 0o600)).To(Succeed())
		return p
	}
	clean := "routes:\n  - {name: a, upstream: \"https://x.example\", auth: {type: bearer, binding: app-xsuaa}}\n"

	It("repeats no value of the config file: misspelt keys, wrong types, user information, YAML errors", func() {
		plant := func(what string) string { return w.secrets.Plant(what) }
		for i, cfg := range []string{
			clean + "acess_log: " + plant("value of a misspelt top-level key") + "\n",
			"routes:\n  - {name: a, upstream: \"https://x.example\", auth: {type: bearer, binding: app-xsuaa, clientsecret: " + plant("value of an unknown auth key") + "}}\n",
			clean + "max_signed_body: " + plant("a string where a number goes") + "\n",
			clean + "drain_timeout: " + plant("a string where a duration goes") + "\n",
			clean + "tracing: {endpoint: \"https://user:" + plant("password in the OTLP endpoint") + "@otel.example\"}\n",
			clean + "tracing: {sampler: traceidratio, sampler_arg: " + plant("a sampler argument") + "}\n",
			clean + "tracing: {sampler: " + plant("a sampler name") + "}\n",
			clean + "tracing: {protocol: " + plant("an OTLP protocol") + "}\n",
			clean + "  oops: " + plant("value after a YAML indentation error") + ": x\n",
			clean + "\t" + plant("key after a tab") + ": 1\n",
		} {
			f := write("c.yaml", cfg)
			for _, cmd := range [][]string{{"validate"}, append([]string{"run"}, loopback...)} {
				s := run(nil, append(cmd, "--config", f, "--vcap-file", w.vcapF)...)
				Expect(s).To(gexec.Exit(2), "case %d %s: %s", i, cmd[0], s.Err.Contents())
				w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			}
		}
	})

	It("refuses bad OTEL_* variables as run does, without repeating them", func() {
		f := write("c.yaml", clean)
		s := run(nil, "validate", "--config", f, "--vcap-file", w.vcapF)
		Expect(s).To(gexec.Exit(0), string(s.Err.Contents()))
		for i, env := range []harness.Env{
			{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:" + w.secrets.Plant("password in OTEL_EXPORTER_OTLP_ENDPOINT") + "@otel.example"},
			{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": w.secrets.Plant("OTEL_TRACES_SAMPLER_ARG")},
			{"OTEL_TRACES_SAMPLER": w.secrets.Plant("OTEL_TRACES_SAMPLER")},
			{"OTEL_RESOURCE_ATTRIBUTES": "team=a," + w.secrets.Plant("a pair without an equals sign")},
			{"OTEL_SDK_DISABLED": w.secrets.Plant("OTEL_SDK_DISABLED")},
			{"OTEL_TRACES_EXPORTER": w.secrets.Plant("OTEL_TRACES_EXPORTER")},
			{"OTEL_EXPORTER_OTLP_PROTOCOL": w.secrets.Plant("OTEL_EXPORTER_OTLP_PROTOCOL")},
		} {
			for _, cmd := range [][]string{{"validate"}, append([]string{"run"}, loopback...)} {
				s := run(env, append(cmd, "--config", f, "--vcap-file", w.vcapF)...)
				Expect(s).To(gexec.Exit(2), "case %d %s: %s", i, cmd[0], s.Err.Contents())
				Expect(string(s.Err.Contents())).To(ContainSubstring("OTEL_"), "case %d %s names the variable", i, cmd[0])
				w.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			}
		}
	})
})
