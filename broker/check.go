package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/sidecar/guard"
	"github.com/credbroker/credbroker/vcap"
)

// Problems is what Check finds. Every entry names its source (the config
// file and line, a flag, the bindings), the key and what to do; none
// carries a secret.
type Problems struct {
	// Errors stop `credbroker run` at start (exit 2); on a reload they keep
	// the previous generation in service.
	Errors sidecar.ConfigErrors
	// Warnings do not stop anything: run logs them at start and on every
	// reload, validate prints them.
	Warnings sidecar.ConfigErrors
}

// Err returns the errors as one error (sidecar.ConfigErrors), or nil.
func (p *Problems) Err() error {
	if p == nil || len(p.Errors) == 0 {
		return nil
	}
	return p.Errors
}

func (p *Problems) addErr(e *sidecar.ConfigError) {
	if !containsProblem(p.Errors, e) {
		p.Errors = append(p.Errors, e)
	}
}

func (p *Problems) addErrs(err error) {
	var ces sidecar.ConfigErrors
	var ce *sidecar.ConfigError
	switch {
	case err == nil:
	case errors.As(err, &ces):
		for _, e := range ces {
			p.addErr(e)
		}
	case errors.As(err, &ce):
		p.addErr(ce)
	default:
		p.addErr(&sidecar.ConfigError{Err: err})
	}
}

func (p *Problems) warn(e *sidecar.ConfigError) {
	if !containsProblem(p.Warnings, e) {
		p.Warnings = append(p.Warnings, e)
	}
}

func containsProblem(list sidecar.ConfigErrors, e *sidecar.ConfigError) bool {
	s := e.Error()
	return slices.ContainsFunc(list, func(x *sidecar.ConfigError) bool { return x.Error() == s })
}

// errPlainHTTPRoutes is the warning naming the routes that add a
// credential to a plain http:// upstream.
var errPlainHTTPRoutes = errors.New("routes add a credential to a plain http:// upstream (loopback, or allow_plain_http: true)")

// checked is what check read, for Load to build the generation from.
type checked struct {
	cfg *sidecar.Config
	set *vcap.Set
	net *Network
}

// Check reads and checks everything Load reads — the config file with the
// flags laid over it, the bindings, the CA file, the certificate
// directories (and their connection.json and pairing URL files), the OAuth
// 1.0a key files and the inbound guard's CA bundles and key files — without
// pairing, renewing, fetching a token or listening, and returns every
// problem at once. Load runs the same checks first and refuses to serve
// when there are errors, so `credbroker validate` and `credbroker run`
// judge the same input the same way. The error is a runtime failure (the
// context ended), never a problem of the input.
func (c *Broker) Check(ctx context.Context) (*Problems, error) {
	_, p, err := c.check(ctx)
	return p, err
}

func (c *Broker) check(ctx context.Context) (*checked, *Problems, error) {
	p := &Problems{}
	var data []byte
	source := "config (defaults: no --config)"
	if c.o.ConfigFile != "" {
		b, err := inputfile.Read(c.o.ConfigFile)
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u
			}
			p.addErr(&sidecar.ConfigError{Source: "--config " + c.o.ConfigFile, Err: err})
			return nil, p, nil
		}
		data, source = b, "config "+c.o.ConfigFile
	}
	cfg, errs := sidecar.ParseConfigAll(data, source)
	for _, e := range errs {
		p.addErr(e)
	}
	if cfg == nil {
		return nil, p, nil // malformed YAML: nothing more can be read from it
	}
	p.addErrs(cfg.Override(c.o.Listen, c.o.AdminListen, c.o.AllowNonLoopback))
	cfg.Resolve = append(cfg.Resolve, c.o.Resolve...)
	if c.o.CAFile != "" {
		cfg.CAFile = c.o.CAFile
	}
	if c.o.DrainTimeout > 0 {
		cfg.DrainTimeout = c.o.DrainTimeout
	}
	if c.o.TokenCacheDir != "" {
		cfg.TokenCacheDir = c.o.TokenCacheDir
	}
	p.addErrs(applyPersistSecret(cfg, c.o.PersistSecret))
	p.addErrs(cfg.OverrideAccessLog(c.o.AccessLog, c.o.AccessLogFormat, c.o.AccessLogSample))

	set, err := c.loadBindings(ctx)
	bindingsFailed := false
	if err != nil {
		if !errors.Is(err, ErrConfig) {
			return nil, nil, err
		}
		bindingsFailed = true
		p.addErr(&sidecar.ConfigError{Source: "bindings", Err: err})
	}
	c.checkBindingRoot(p)
	lookup := bindingLookup(set)
	if set != nil {
		p.addErrs(cfg.ValidateBindings(lookup, bindingNames(set)))
	} else if err := cfg.Validate(lookup); err != nil {
		p.addErrs(err)
		if !bindingsFailed {
			p.addErr(&sidecar.ConfigError{Source: "bindings", Err: errors.New("no bindings were read: set --vcap-file, VCAP_SERVICES, VCAP_SERVICES_FILE_PATH, --bindings-dir or SERVICE_BINDING_ROOT")})
		}
	}
	checkBindingProblems(p, cfg, set, lookup)
	if names := cfg.PlainHTTPRoutes(); len(names) > 0 {
		p.warn(cfg.Problem("routes", "", fmt.Errorf("%w: %s", errPlainHTTPRoutes, strings.Join(names, ", "))))
	}
	if len(cfg.Routes) == 0 && cfg.Inbound == nil && len(cfg.TokenAPI.Bindings) == 0 {
		p.warn(cfg.Problem("routes", "", errors.New("no routes, no token_api and no inbound: credbroker serves nothing but health and metrics (every proxy request gets 403); add routes (docs/configuration.md)")))
	}

	n, err := NewNetwork(cfg.CAFile, cfg.Resolve)
	if err != nil {
		var ne *NetworkError
		if !errors.As(err, &ne) {
			return nil, nil, err
		}
		msg := ne.Err.Error()
		if ne.Path != "" {
			msg = ne.Path + ": " + msg
		}
		e := cfg.Problem(ne.Field, "", fmt.Errorf("%w: %s", sidecar.ErrInvalidValue, msg))
		if ne.Field == "ca_file" && c.o.CAFile != "" {
			e = &sidecar.ConfigError{Source: "--ca-file", Err: e.Err} // the flag, not the file, named it
		}
		p.addErr(e)
	}
	if cfg.TokenCacheDir != "" {
		if err := checkTokenDir(cfg.TokenCacheDir); err != nil {
			p.addErr(cfg.Problem("token_cache_dir", "", fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err)))
		}
	}
	for i, ce := range cfg.Certificates {
		if ce.Dir != "" {
			c.checkDirCertificate(ctx, p, cfg, i, ce)
		}
	}
	for i, r := range cfg.Routes {
		if r.Auth.Type == sidecar.AuthOAuth1 {
			for _, f := range []struct{ field, path string }{{"key_file", r.Auth.KeyFile}, {"secret_file", r.Auth.SecretFile}} {
				if f.path == "" {
					continue // reported by the config check
				}
				if _, e := readOAuth1File(cfg, i, r, f.field, f.path); e != nil {
					p.addErr(e)
				}
			}
		}
	}
	if cfg.Inbound != nil && n != nil && !slices.ContainsFunc(p.Errors, func(e *sidecar.ConfigError) bool { return strings.HasPrefix(e.Field, "inbound") }) {
		checkInbound(p, cfg, set)
	}
	sortProblems(p.Errors)
	sortProblems(p.Warnings)
	if len(p.Errors) > 0 {
		return nil, p, nil
	}
	return &checked{cfg: cfg, set: set, net: n}, p, nil
}

// sortProblems orders problems by line; those without one (flags,
// bindings) follow in the order they were found.
func sortProblems(list sidecar.ConfigErrors) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i].Line, list[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// checkTokenDir checks what openTokenDir needs without creating or
// changing anything: root is a directory, and its credbroker-tokens
// subdirectory, when there, is a directory (not a symlink) of this user.
func checkTokenDir(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", root)
	}
	sub := filepath.Join(root, TokenCacheSubdir)
	fi, err = os.Lstat(sub)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created at start
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s: not a directory (a symlink?)", sub)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s: owned by uid %d, not by credbroker (uid %d)", sub, st.Uid, os.Geteuid())
	}
	return nil
}

// bindingNames are the distinct names of set, sorted.
func bindingNames(set *vcap.Set) []string {
	out := []string{}
	for _, b := range set.Bindings {
		if !slices.Contains(out, b.Name) {
			out = append(out, b.Name)
		}
	}
	sort.Strings(out)
	return out
}

// bindingRef is one place of the config that names a binding.
type bindingRef struct {
	field, name, binding string
}

// bindingRefs lists the places that name a binding, in config order.
func bindingRefs(cfg *sidecar.Config) []bindingRef {
	var out []bindingRef
	for i, r := range cfg.Routes {
		for _, f := range []struct{ key, b string }{{"binding", r.Auth.Binding}, {"connectivity", r.Auth.Connectivity}, {"principal_exchange", r.Auth.PrincipalExchange}} {
			if f.b != "" {
				out = append(out, bindingRef{fmt.Sprintf("routes[%d].auth.%s", i, f.key), r.Name, f.b})
			}
		}
	}
	for i, ce := range cfg.Certificates {
		if ce.Binding != "" {
			out = append(out, bindingRef{fmt.Sprintf("certificates[%d].binding", i), ce.Name, ce.Binding})
		}
	}
	for i, b := range cfg.TokenAPI.Bindings {
		if b != "*" {
			out = append(out, bindingRef{fmt.Sprintf("token_api.bindings[%d]", i), "", b})
		}
	}
	if cfg.Inbound != nil {
		for _, b := range cfg.Inbound.JWTBindings() {
			out = append(out, bindingRef{"inbound.rules", "", b})
		}
	}
	return out
}

// checkBindingProblems: a binding the config uses must be usable — each of
// its problems is an error at the first place that names it (what /readyz
// would report as "binding … is unusable" is refused before serving). The
// problems of the other bindings are warnings, except a plain-http token
// URL of a binding the token API hands out with "*" (credentials in clear).
func checkBindingProblems(p *Problems, cfg *sidecar.Config, set *vcap.Set, lookup sidecar.BindingLookup) {
	if set == nil {
		return
	}
	used := map[string]bool{}
	for _, ref := range bindingRefs(cfg) {
		if used[ref.binding] {
			continue
		}
		used[ref.binding] = true
		info, ok := lookup(ref.binding)
		if !ok {
			continue // unknown: reported by Validate
		}
		for _, pr := range info.Problems {
			p.addErr(cfg.Problem(ref.field, ref.name, fmt.Errorf("%w: %s", sidecar.ErrUnusableBinding, pr)))
		}
	}
	all := slices.Contains(cfg.TokenAPI.Bindings, "*")
	for _, b := range set.Bindings {
		if used[b.Name] {
			continue
		}
		for _, e := range b.Errors() {
			if all && errors.Is(e, vcap.ErrPlainHTTP) {
				p.addErr(cfg.Problem("token_api.bindings", "", fmt.Errorf("%w: %v", sidecar.ErrUnusableBinding, e)))
				continue
			}
			p.warn(&sidecar.ConfigError{Source: "bindings", Err: fmt.Errorf("%v (the config does not use this binding)", e)})
		}
	}
}

// bindingFileNames are entries of a single servicebinding.io or SAP
// service-operator binding directory.
var bindingFileNames = []string{"type", "provider", "clientid", "clientsecret", "url", "uri", "credentials", "certificate", "key", "label", "plan", "instance_name", ".metadata"}

// checkBindingRoot warns when the bindings directory holds a binding's
// files itself (SERVICE_BINDING_ROOT pointing at one binding rather than
// at the directory of bindings): those files are not read as a binding.
func (c *Broker) checkBindingRoot(p *Problems) {
	if kind, _ := c.o.Bindings.Chosen(); kind != "bindings-dir" {
		return
	}
	root := c.o.Bindings.BindingsDir
	var found []string
	for _, n := range bindingFileNames {
		fi, err := os.Stat(filepath.Join(root, n))
		if err == nil && fi.Mode().IsRegular() {
			found = append(found, n)
		}
	}
	if len(found) == 0 {
		return
	}
	p.warn(&sidecar.ConfigError{Source: "bindings dir " + root, Err: fmt.Errorf(
		"it holds binding files itself (%s): it looks like one binding's directory; point --bindings-dir / SERVICE_BINDING_ROOT at the directory above it (each binding is a subdirectory named after the binding)",
		strings.Join(found, ", "))})
}

// checkDirCertificate checks a certificates entry with dir: a valid pair
// there, or a pairing URL file to pair at start; with renew, the
// connection.json renewal needs; without renew, a warning when the
// certificate comes from a connector (it will not be renewed).
func (c *Broker) checkDirCertificate(ctx context.Context, p *Problems, cfg *sidecar.Config, i int, ce sidecar.Certificate) {
	f := fmt.Sprintf("certificates[%d]", i)
	pair, err := certwatch.LoadDir(ctx, ce.Dir)
	if err == nil {
		err = pair.Verify(c.now())
	}
	valid := err == nil
	switch {
	case !valid && ce.PairingURLFile != "":
		if _, err := pairingURLFile(ce.PairingURLFile)(ctx); err != nil {
			p.addErr(cfg.Problem(f+".pairing_url_file", ce.Name, fmt.Errorf("%w: %v (the directory holds no valid pair, so credbroker pairs at start with the one-time token URL in this file)", sidecar.ErrInvalidValue, err)))
		}
	case !valid:
		p.addErr(cfg.Problem(f+".dir", ce.Name, fmt.Errorf("%w: no usable certificate: %v; put a valid tls.crt and tls.key there (credbroker pair --cert-dir %s), or set pairing_url_file to pair at start", sidecar.ErrInvalidValue, err, ce.Dir)))
	case ce.Renew:
		ciPath := filepath.Join(ce.Dir, certwatch.ConnectionFile)
		ci, err := connector.LoadConnectionInfo(ciPath)
		switch {
		case err != nil:
			p.addErr(cfg.Problem(f+".renew", ce.Name, fmt.Errorf("%w: renew: true needs %s (written by credbroker pair): %v", sidecar.ErrInvalidValue, ciPath, err)))
		case ci.RenewCertURL == "":
			p.addErr(cfg.Problem(f+".renew", ce.Name, fmt.Errorf("%w: renew: true but %s has no renew_cert_url", sidecar.ErrInvalidValue, ciPath)))
		}
	}
	if !ce.Renew {
		_, statErr := os.Stat(filepath.Join(ce.Dir, certwatch.ConnectionFile))
		if ce.PairingURLFile != "" || statErr == nil {
			why := "it was paired with a connector"
			if ce.PairingURLFile != "" {
				why = "it is paired with a connector (pairing_url_file)"
			}
			until := ""
			if valid {
				until = " at " + pair.Leaf().NotAfter.UTC().Format("2006-01-02T15:04:05Z")
			}
			p.warn(cfg.Problem(f, ce.Name, fmt.Errorf("%s but renew is false: it will not be renewed and stops working when it expires%s; set renew: true", why, until)))
		}
	}
}

// checkInbound builds the inbound guard once, without starting it, to read
// every file its rules name (CA bundles, revocation lists, OAuth 1.0a key
// files) and check the bindings of its jwt rules.
func checkInbound(p *Problems, cfg *sidecar.Config, set *vcap.Set) {
	opts := []guard.Option{guard.WithBindings(guardBindings(set))}
	if t := cfg.Inbound.TLS; t != nil && t.Certificate != "" {
		opts = append(opts, guard.WithGetCertificate(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("checking only")
		}))
	}
	gd, err := guard.New(cfg.Inbound, opts...)
	if err != nil {
		var fe *guard.FieldError
		if errors.As(err, &fe) {
			f := "inbound"
			if fe.Field != "" {
				f += "." + fe.Field
			}
			p.addErr(cfg.Problem(f, "", fe.Err))
			return
		}
		p.addErr(cfg.Problem("inbound", "", err))
		return
	}
	_ = gd.Close()
}
