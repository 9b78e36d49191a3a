package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	. "github.com/onsi/gomega"
)

const bindingsExampleVCAP = "../../examples/vcap.json"

func clearBindingsEnv(t *testing.T) {
	for _, k := range []string{"VCAP_SERVICES", "VCAP_SERVICES_FILE_PATH", "SERVICE_BINDING_ROOT", "CREDBROKER_VCAP_FILE", "CREDBROKER_BINDINGS_DIR", "CREDBROKER_KEY_FILE", "CREDBROKER_JSON"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// runCmd runs credbroker in-process and returns the exit code, stdout and
// stderr. Other commands' tests use it too: keep its signature.
func runCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBindingsJSONFields(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	code, out, errOut := runCmd("bindings", "--json", "--vcap-file", bindingsExampleVCAP)
	g.Expect(code).To(Equal(exitOK), errOut)
	var arr []map[string]any
	g.Expect(json.Unmarshal([]byte(out), &arr)).To(Succeed())
	g.Expect(arr).To(HaveLen(3))
	for _, o := range arr {
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := []string{"auth", "credential_type", "instance_name", "label", "name", "plan", "problems", "token_url"}
		if o["auth"] == "mtls" {
			want = []string{"auth", "cert_not_after", "credential_type", "instance_name", "label", "name", "plan", "problems", "token_url"}
		}
		g.Expect(keys).To(Equal(want), "exactly the DESIGN.md fields")
		g.Expect(o["problems"]).To(Equal([]any{}), "an empty array, not null")
	}
	g.Expect(arr[2]).To(Equal(map[string]any{
		"name": "example-xsuaa-x509", "label": "xsuaa", "plan": "broker", "instance_name": "example-xsuaa-x509",
		"credential_type": "x509", "auth": "mtls", "token_url": "https://example.authentication.cert.localhost:8443/oauth/token",
		"cert_not_after": "2046-01-01T00:00:00Z", "problems": []any{},
	}))
	g.Expect(out).NotTo(ContainSubstring("FAKE-example"))
	g.Expect(out).NotTo(ContainSubstring("PRIVATE KEY"))
}

func TestBindingsSourcesAndExitCodes(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	code, _, errOut := runCmd("bindings")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring("no bindings: set --vcap-file, VCAP_SERVICES"))

	data, err := os.ReadFile(bindingsExampleVCAP)
	g.Expect(err).NotTo(HaveOccurred())
	t.Setenv("VCAP_SERVICES", string(data))
	code, out, _ := runCmd("bindings")
	g.Expect(code).To(Equal(exitOK))
	g.Expect(out).To(ContainSubstring("Bindings from VCAP_SERVICES:"))

	// --vcap-file wins over VCAP_SERVICES; the ignored source is logged.
	bad := filepath.Join(t.TempDir(), "bad.json")
	g.Expect(os.WriteFile(bad, []byte(`{"xsuaa": [`), 0o600)).To(Succeed())
	code, _, errOut = runCmd("bindings", "--vcap-file", bad)
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring("vcap: file " + bad + " (byte 11): malformed input: unexpected end of JSON input"))
	g.Expect(errOut).To(ContainSubstring("ignored=VCAP_SERVICES"))

	// The environment form of the flag.
	t.Setenv("CREDBROKER_VCAP_FILE", bad)
	code, _, _ = runCmd("bindings")
	g.Expect(code).To(Equal(exitInput))

	// A binding with a problem: listed, and exit 2 naming source, binding and field.
	clearBindingsEnv(t)
	t.Setenv("VCAP_SERVICES", `{"xsuaa":[{"name":"my-xsuaa","plan":"application","credentials":{"clientid":"c","url":"https://a.authentication.localhost","credential-type":"x509","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}}]}`)
	code, out, errOut = runCmd("bindings")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(out).To(ContainSubstring("1 problem(s)"))
	g.Expect(errOut).To(ContainSubstring(`vcap: VCAP_SERVICES: binding "my-xsuaa": field "certificate": certificate does not parse`))

	code, _, errOut = runCmd("bindings", "extra-arg")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring(`unexpected argument "extra-arg"`))
}

func TestBindingsHelpDocumentsEveryFlag(t *testing.T) {
	g := NewWithT(t)
	code, out, _ := runCmd("bindings", "--help")
	g.Expect(code).To(Equal(exitOK))
	for _, s := range []string{"-json", "-vcap-file", "CREDBROKER_VCAP_FILE", "-bindings-dir", "CREDBROKER_BINDINGS_DIR", "SERVICE_BINDING_ROOT", "$VCAP_SERVICES, $VCAP_SERVICES_FILE_PATH", "-key-file", "CREDBROKER_KEY_FILE"} {
		g.Expect(out).To(ContainSubstring(s))
	}
}

func TestSelectBinding(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	set, err := loadBindings(t.Context(), BindingSourceOptions{VCAPFile: bindingsExampleVCAP}, bindingsTestLogger())
	g.Expect(err).NotTo(HaveOccurred())
	b, err := selectBinding(set, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.Name).To(Equal("example-xsuaa"), "plan application first")
	b, err = selectBinding(set, "example-ias")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.Auth.TokenURL).To(Equal("https://example.accounts.localhost:8443/oauth2/token"))
	_, err = selectBinding(set, "nope")
	g.Expect(exitCode(err)).To(Equal(exitInput))
	g.Expect(err.Error()).To(ContainSubstring(`no matching binding: name "nope"`))
}

func bindingsTestLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
