package sidecar

import (
	"errors"
	"testing"
)

// FuzzParseConfig feeds arbitrary YAML to the config parser: it must never
// panic, every error must be a *ConfigError (source, line, field), and an
// accepted config must have its defaults and unique route names.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		goodConfig,
		"",
		"listen: 127.0.0.1:1\n",
		"routes: [{name: a, upstream: https://a.example, auth: {type: none}}]\n",
		"routes:\n  - {name: a, upstream: 'https://a.example/x?y=1', auth: {type: bearer, binding: b, grant: jwt-bearer, tenant_header: X-T}}\n",
		"certificates: [{name: c, dir: /d, renew: true}]\nroutes: [{name: e, upstream: https://e.example, auth: {type: mtls, certificate: c}}]\n",
		"inbound: {listen: 0.0.0.0:8443, app: 'http://127.0.0.1:8080', rules: [{path: /, accept: [jwt], binding: b}]}\n",
		"drain_timeout: 1h\ntimeouts: {dial: 1s, response_header: 0s}\nresolve: ['*.x=127.0.0.1']\n",
		"routes: [\n",
		"listen: [1, 2]\n",
		"routes: {name: a}\n",
		"? [a]\n: b\n",
		"&a [*a]\n",
		"---\n---\n",
		"drain_timout: 5s\nroutes: [{name: a, upstream: https://a.example, auth: {type: mtls, certificate: c, bindng: b}}]\n",
		"routes: [{name: a, upstream: https://a.example, auth: [none]}]\nmax_token_keys: x\n",
		"routes:\n  - name: a\n    auth:\n      <<: {type: none}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The validate path: every problem at once, the partial config
		// checked against bindings, never a panic.
		all, errs := ParseConfigAll(data, "fuzz")
		if all == nil && len(errs) == 0 {
			t.Fatal("ParseConfigAll: neither a config nor a problem")
		}
		for _, e := range errs {
			if e == nil || e.Err == nil {
				t.Fatalf("ParseConfigAll: empty problem in %v", errs)
			}
		}
		if all != nil {
			_ = all.ValidateBindings(func(n string) (BindingInfo, bool) { return BindingInfo{Auth: true}, n == "b" }, []string{"b", "my-xsuaa"})
		}
		cfg, err := ParseConfig(data, "fuzz")
		if (err == nil) != (len(errs) == 0) {
			t.Fatalf("ParseConfig and ParseConfigAll disagree: %v / %v", err, errs)
		}
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error without *ConfigError: %T %v", err, err)
			}
			return
		}
		if cfg.Listen == "" || cfg.AdminListen == "" || cfg.DrainTimeout <= 0 {
			t.Fatalf("defaults missing: %+v", cfg)
		}
		seen := map[string]bool{}
		for _, r := range cfg.Routes {
			if seen[r.Name] || !routeName.MatchString(r.Name) {
				t.Fatalf("accepted bad or duplicate route name %q", r.Name)
			}
			seen[r.Name] = true
		}
		_ = cfg.Validate(func(string) (BindingInfo, bool) { return BindingInfo{Auth: true, Certificate: true}, true })
	})
}
