package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestRunRefusesBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	vcapFile := filepath.Join(dir, "vcap.json")
	NewWithT(t).Expect(os.WriteFile(vcapFile, []byte(`{"xsuaa":[{"name":"my-xsuaa","label":"xsuaa","plan":"application","credentials":{"clientid":"sb-x","clientsecret":"planted-run-secret-9f8e7d","url":"https://p.authentication.localhost:1","uaadomain":"authentication.localhost"}}]}`), 0o600)).To(Succeed())
	cases := []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"unknown key", "listen: 127.0.0.1:0\nlisten_adress: x\n", nil, []string{"line 2", "listen_adress", "unknown key"}},
		{"unknown binding", "routes: [{name: o, upstream: https://o.example, auth: {type: bearer, binding: nope}}]\n", nil, []string{`routes[0].auth.binding ("o"): unknown binding: "nope"`}},
		{"no bindings at all", "routes: [{name: o, upstream: https://o.example, auth: {type: bearer, binding: nope}}]\n", []string{"--vcap-file", ""}, []string{"no bindings were read"}},
		{"mtls without certificate", "routes: [{name: e, upstream: https://e.example, auth: {type: mtls}}]\n", nil, []string{"routes[0].auth.certificate", "an mtls route needs a certificate"}},
		{"oauth1 without secret", "routes: [{name: c, upstream: https://c.example, auth: {type: oauth1, key_file: /k}}]\n", nil, []string{"secret_file"}},
		{"oauth1 key file missing", "routes: [{name: c, upstream: https://c.example, auth: {type: oauth1, key_file: /nonexistent/k, secret_file: /nonexistent/s}}]\n", nil, []string{"routes[0].auth.key_file", "/nonexistent/k"}},
		{"duplicate routes", "routes: [{name: a, upstream: https://a.example, auth: {type: none}}, {name: a, upstream: https://a.example, auth: {type: none}}]\n", nil, []string{"duplicate name"}},
		{"non-loopback flag", "", []string{"--listen", "0.0.0.0:8411"}, []string{"not loopback", "--allow-non-loopback"}},
		{"pairing url file missing", "certificates: [{name: c, dir: " + dir + "/cert, pairing_url_file: /nonexistent/pairing-url}]\n", nil, []string{"pairing_url_file /nonexistent/pairing-url"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			g.Expect(os.WriteFile(cfg, []byte(tc.config), 0o600)).To(Succeed())
			args := append([]string{"run", "--config", cfg, "--vcap-file", vcapFile, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)
			code, out, errOut := runCmd(args...)
			g.Expect(code).To(Equal(exitInput), "stdout %s\nstderr %s", out, errOut)
			for _, w := range tc.want {
				g.Expect(errOut).To(ContainSubstring(w))
			}
			g.Expect(out + errOut).NotTo(ContainSubstring("planted-run-secret-9f8e7d"))

			// validate judges the same input the same way, in the same words.
			args[0] = "validate"
			vcode, vout, verrOut := runCmd(args...)
			g.Expect(vcode).To(Equal(exitInput), "stdout %s\nstderr %s", vout, verrOut)
			g.Expect(problems(errOut, "run")).NotTo(BeEmpty())
			g.Expect(problems(verrOut, "validate")).To(Equal(problems(errOut, "run")))
			g.Expect(vout + verrOut).NotTo(ContainSubstring("planted-run-secret-9f8e7d"))
		})
	}
	g := NewWithT(t)
	code, _, errOut := runCmd("run", "--config", filepath.Join(dir, "missing.yaml"))
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring("--config " + filepath.Join(dir, "missing.yaml")))
	code, _, verrOut := runCmd("validate", "--config", filepath.Join(dir, "missing.yaml"))
	g.Expect(code).To(Equal(exitInput))
	g.Expect(problems(verrOut, "validate")).To(Equal(problems(errOut, "run")))
}

// problems is the error output of a command without its log lines and
// with the command's name taken out.
func problems(stderr, cmd string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "time=") || strings.HasPrefix(l, "credbroker validate: warning: ") || l == "" {
			continue
		}
		out = append(out, strings.Replace(l, "credbroker "+cmd+": ", "credbroker CMD: ", 1))
	}
	return out
}
