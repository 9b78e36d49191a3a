package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/credbroker/credbroker/vcap"
)

// BindingSourceOptions say where bindings come from. Every command that
// needs bindings embeds it in its options (it must stay an exported struct:
// the CLI binds the flags of embedded option groups).
//
// Precedence (DESIGN.md): --vcap-file, VCAP_SERVICES, VCAP_SERVICES_FILE_PATH,
// then --bindings-dir / SERVICE_BINDING_ROOT (the flag wins over the
// variable). The first source that is set is read; sources are never merged
// (see vcap.Sources). Ignored sources are logged at warn level.
type BindingSourceOptions struct {
	VCAPFile    string `flag:"vcap-file" env:"CREDBROKER_VCAP_FILE" usage:"read bindings from this file of VCAP_SERVICES JSON. Bindings come from the first source set: --vcap-file, $VCAP_SERVICES, $VCAP_SERVICES_FILE_PATH, --bindings-dir / $SERVICE_BINDING_ROOT (never merged)"`
	BindingsDir string `flag:"bindings-dir" env:"CREDBROKER_BINDINGS_DIR" usage:"read bindings from this service-binding root (servicebinding.io or SAP BTP service-operator layout; default $SERVICE_BINDING_ROOT)"`
	KeyFile     string `flag:"key-file" env:"CREDBROKER_KEY_FILE" usage:"PEM private key (optionally with its certificate chain) for self-managed X.509 bindings that carry a certificate but no key"`

	// The platform's own variables, read from the environment only.
	VCAPServices         string `env:"VCAP_SERVICES"`
	VCAPServicesFilePath string `env:"VCAP_SERVICES_FILE_PATH"`
	ServiceBindingRoot   string `env:"SERVICE_BINDING_ROOT"`
}

// sources maps the options to vcap.Sources.
func (o BindingSourceOptions) sources() vcap.Sources {
	dir := o.BindingsDir
	if dir == "" {
		dir = o.ServiceBindingRoot
	}
	return vcap.Sources{
		VCAPFile:             o.VCAPFile,
		VCAPServices:         o.VCAPServices,
		VCAPServicesFilePath: o.VCAPServicesFilePath,
		BindingsDir:          dir,
	}
}

// ignored names the sources that are set but lose to the chosen one.
func (o BindingSourceOptions) ignored() []string {
	type cand struct{ name, val string }
	all := []cand{
		{"--vcap-file", o.VCAPFile},
		{"VCAP_SERVICES", o.VCAPServices},
		{"VCAP_SERVICES_FILE_PATH", o.VCAPServicesFilePath},
		{"--bindings-dir", o.BindingsDir},
		{"SERVICE_BINDING_ROOT", o.ServiceBindingRoot},
	}
	var out []string
	chosen := false
	for _, c := range all {
		if c.val == "" {
			continue
		}
		if !chosen {
			chosen = true
			continue
		}
		out = append(out, c.name)
	}
	return out
}

// loadBindings reads the bindings from the first source that is set. A
// source that cannot be read or parsed, or no source at all, is a badInput
// error naming the source. Problems of single bindings are not errors here:
// they are in each Binding.Problems (Set.Err joins them); commands decide
// (bindings lists them and exits 2, token refuses the binding it needs).
func loadBindings(ctx context.Context, opts BindingSourceOptions, log *slog.Logger) (*vcap.Set, error) {
	src := opts.sources()
	kind, display := src.Chosen()
	if kind == "" {
		return nil, badInputf("no bindings: set --vcap-file, VCAP_SERVICES, VCAP_SERVICES_FILE_PATH, --bindings-dir or SERVICE_BINDING_ROOT")
	}
	if ign := opts.ignored(); len(ign) > 0 {
		log.Warn("binding sources: the first one set wins, others are ignored", "source", display, "ignored", strings.Join(ign, ","))
	}
	vopts := []vcap.Option{vcap.WithLogger(log), vcap.WithClock(time.Now)}
	if opts.KeyFile != "" {
		vopts = append(vopts, vcap.WithKeyFile(opts.KeyFile))
	}
	set, err := vcap.Load(ctx, src, vopts...)
	if err != nil {
		var ve *vcap.Error
		if errors.As(err, &ve) || errors.Is(err, vcap.ErrNoBindings) {
			return nil, badInput(err)
		}
		return nil, err
	}
	log.Debug("bindings loaded", "source", set.Source, "count", set.Len())
	return set, nil
}

// selectBinding picks the binding a command works with: by name, else the
// preferred xsuaa binding (plan order), else the single IAS binding, else the
// only binding. A binding that is missing, ambiguous or has problems is a
// badInput error that names the source, the binding and the field.
func selectBinding(set *vcap.Set, name string) (*vcap.Binding, error) {
	b, err := set.Select(name)
	if err != nil {
		return nil, badInput(err)
	}
	if err := b.Err(); err != nil {
		return nil, badInput(err)
	}
	return b, nil
}

// problemsError joins the problems of every binding, one per line, for exit 2.
func problemsError(set *vcap.Set) error {
	var lines []string
	n := 0
	for _, b := range set.Bindings {
		if len(b.Problems) > 0 {
			n++
		}
		for _, e := range b.Errors() {
			lines = append(lines, "  "+e.Error())
		}
	}
	if n == 0 {
		return nil
	}
	return badInputf("%d of %d bindings have problems:\n%s", n, set.Len(), strings.Join(lines, "\n"))
}
