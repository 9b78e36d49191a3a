package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version of credbroker",
		run: func(_ context.Context, e *cmdEnv, _ any) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			_, err := fmt.Fprintf(e.stdout, "credbroker %s\n", v)
			return err
		},
	})
}
