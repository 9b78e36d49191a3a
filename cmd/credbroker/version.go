package main

import (
	"context"
	"fmt"

	"github.com/credbroker/credbroker/internal/buildinfo"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version, commit and build time of credbroker (also: credbroker --version)",
		run: func(_ context.Context, e *cmdEnv, _ any) error {
			_, err := fmt.Fprintln(e.stdout, buildinfo.Get())
			return err
		},
	})
}
