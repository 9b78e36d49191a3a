package broker

import (
	"errors"
	"log/slog"
	"slices"

	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// checkPlainHTTP refuses (exit 2) a configuration that would send a binding's
// credentials over plain http: a binding the routes, the token API, the
// certificates or the inbound guard use whose url or certurl is http:// to a
// host other than loopback (vcap reports it as a problem, which alone would
// only make the route answer 503). It logs every route that adds a
// credential to an http:// upstream (loopback, or allow_plain_http).
func checkPlainHTTP(cfg *sidecar.Config, set *vcap.Set, log *slog.Logger) error {
	if names := cfg.PlainHTTPRoutes(); len(names) > 0 {
		log.Warn("routes add a credential to a plain http:// upstream (loopback, or allow_plain_http: true)", "routes", names)
	}
	if set == nil {
		return nil
	}
	var used []string
	all := false
	for _, r := range cfg.Routes {
		used = append(used, r.Auth.Binding)
	}
	for _, c := range cfg.Certificates {
		used = append(used, c.Binding)
	}
	for _, b := range cfg.TokenAPI.Bindings {
		all = all || b == "*"
		used = append(used, b)
	}
	if cfg.Inbound != nil {
		used = append(used, cfg.Inbound.JWTBindings()...)
	}
	for _, b := range set.Bindings {
		if !all && !slices.Contains(used, b.Name) {
			continue
		}
		for _, e := range b.Errors() {
			if errors.Is(e, vcap.ErrPlainHTTP) {
				return configError(e)
			}
		}
	}
	return nil
}
