package main

import (
	"errors"
	"os"

	"github.com/credbroker/credbroker/sidecar"
)

// blameOverrides makes a refused listen address that came from --listen,
// --admin-listen or their variables name that flag or variable instead of
// the config file (which it overrode). It edits the errors in place.
func blameOverrides(err error, e *cmdEnv, o *RunOptions) {
	if err == nil {
		return
	}
	var errs []*sidecar.ConfigError
	var many sidecar.ConfigErrors
	var one *sidecar.ConfigError
	switch {
	case errors.As(err, &many):
		errs = many
	case errors.As(err, &one):
		errs = []*sidecar.ConfigError{one}
	}
	for _, ce := range errs {
		var src string
		switch {
		case ce.Field == "listen" && o.Listen != "":
			src = overrideSource(e, "listen", "CREDBROKER_LISTEN")
		case ce.Field == "admin_listen" && o.AdminListen != "":
			src = overrideSource(e, "admin-listen", "CREDBROKER_ADMIN_LISTEN")
		case ce.Field == "access_log.format" && o.AccessLogFormat != "":
			src = overrideSource(e, "access-log-format", "CREDBROKER_ACCESS_LOG_FORMAT")
		case ce.Field == "access_log.path" && o.AccessLog != "":
			src = overrideSource(e, "access-log", "CREDBROKER_ACCESS_LOG")
		default:
			continue
		}
		ce.Source, ce.Line, ce.Field = src, 0, ""
	}
}

// overrideSource names where a flag's value came from: the command line or
// its variable.
func overrideSource(e *cmdEnv, flagName, envName string) string {
	if e.setFlags[flagName] {
		return "--" + flagName
	}
	if _, ok := os.LookupEnv(envName); ok {
		return envName
	}
	return "--" + flagName
}
