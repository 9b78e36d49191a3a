package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/credbroker/credbroker/broker"
)

func init() {
	register(&command{
		name:    "validate",
		summary: "check the config, the bindings, certificate files and CA bundles as run would, without serving; every problem at once (exit 0 or 2)",
		usage: "[--config FILE] [--listen ADDR] [--admin-listen ADDR] [--allow-non-loopback] [--resolve PATTERN=ADDR]... [--ca-file F] " +
			"[--drain-timeout D] [--poll-interval D] [--token-cache-dir DIR] [--persist-kubernetes-secret [NS/]NAME] [--service-account-dir DIR] " +
			"[--access-log FILE] [--access-log-format json|text] [--access-log-sample F] [--vcap-file F | --bindings-dir D] [--key-file K]",
		// The same flags and variables as run: validate judges exactly what
		// run would start with.
		newOptions: func() any { return &RunOptions{} },
		run: func(ctx context.Context, e *cmdEnv, opts any) error {
			return runValidate(ctx, e, opts.(*RunOptions))
		},
	})
}

// runValidate runs the checks `run` runs before it serves (broker.Check)
// and prints the warnings on stderr; the errors are its error, printed by
// the framework in the same form as run's (exit 2). Clean or with warnings
// only, it prints a summary on stdout and exits 0.
func runValidate(ctx context.Context, e *cmdEnv, o *RunOptions) error {
	if err := o.check(e); err != nil {
		return err
	}
	bo, err := o.brokerOptionsEnv()
	if err != nil {
		return err
	}
	b, err := broker.New(bo, broker.WithLogger(e.log))
	if err != nil {
		return err
	}
	defer b.Close()
	p, err := b.Check(ctx)
	if err != nil {
		return err
	}
	var warnings []string
	if w := o.ignoredSources(); w != "" {
		warnings = append(warnings, w)
	}
	for _, w := range p.Warnings {
		warnings = append(warnings, w.Error())
	}
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "credbroker validate: warning: %s\n", w)
	}
	if err := p.Err(); err != nil {
		blameOverrides(err, e, o)
		return badInput(err)
	}
	what := "config (defaults: no --config)"
	if o.Config != "" {
		what = "config " + o.Config
	}
	src := "no bindings"
	if _, display := o.sources().Chosen(); display != "" {
		src = "bindings from " + display
	}
	summary := fmt.Sprintf("%s: ok (%s)", what, src)
	if n := len(warnings); n > 0 {
		summary += fmt.Sprintf(", %d %s above", n, plural(n, "warning", "warnings"))
	}
	fmt.Fprintln(e.stdout, strings.TrimSpace(summary))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
