package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/destination"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// DestinationOptions are the flags of `credbroker destination NAME`.
type DestinationOptions struct {
	BindingSourceOptions
	Binding       string        `flag:"binding" env:"CREDBROKER_DESTINATION_BINDING" usage:"destination service binding (default: the only binding with label destination)"`
	Connectivity  string        `flag:"connectivity" env:"CREDBROKER_CONNECTIVITY_BINDING" usage:"connectivity binding, to check that an OnPremise destination's proxy token can be had (default: the only binding with label connectivity, if any)"`
	Tenant        string        `flag:"tenant" env:"CREDBROKER_TENANT" usage:"subscriber subdomain (default: the provider)"`
	TenantMode    string        `flag:"tenant-mode" env:"CREDBROKER_TENANT_MODE" usage:"subscriber-first, subscriber-only or provider-only" default:"subscriber-first"`
	UserTokenFile string        `flag:"user-token-file" env:"CREDBROKER_USER_TOKEN_FILE" usage:"file holding the user's JWT, for user-dependent destinations (or CREDBROKER_USER_TOKEN)"`
	JSON          bool          `flag:"json" env:"CREDBROKER_JSON" usage:"print JSON instead of a table"`
	Resolve       []string      `flag:"resolve" env:"CREDBROKER_RESOLVE" usage:"dial override PATTERN=ADDR (names under .localhost always go to 127.0.0.1)"`
	CAFile        string        `flag:"ca-file" env:"CREDBROKER_CA_FILE" usage:"PEM CAs trusted in addition to the system roots"`
	Timeout       time.Duration `flag:"timeout" env:"CREDBROKER_TIMEOUT" usage:"give up after this long" default:"30s"`

	// Read from the environment only.
	UserToken string `env:"CREDBROKER_USER_TOKEN"`
}

func init() {
	register(&command{
		name:    "destination",
		summary: "resolve a destination through the SAP Destination service and show it (URL, type, proxy, cache expiry; secrets redacted)",
		usage: "NAME [--binding B] [--connectivity C] [--tenant T] [--tenant-mode M] [--user-token-file F] [--json] " +
			"[--resolve PATTERN=ADDR]... [--ca-file F] [--timeout D] [--vcap-file F | --bindings-dir D] [--key-file K]",
		newOptions:   func() any { return &DestinationOptions{} },
		run:          runDestination,
		interspersed: true,
	})
}

// destinationOutput is what the command prints. Nothing in it is secret:
// headers by name, the certificate by subject and expiry.
type destinationOutput struct {
	Name              string   `json:"name"`
	Binding           string   `json:"binding"`
	Tenant            string   `json:"tenant,omitempty"`
	FromProvider      bool     `json:"from_provider"`
	Owner             string   `json:"owner_subaccount,omitempty"`
	URL               string   `json:"url"`
	Authentication    string   `json:"authentication"`
	ProxyType         string   `json:"proxy_type"`
	LocationID        string   `json:"location_id,omitempty"`
	ConnectivityProxy string   `json:"connectivity_proxy,omitempty"`
	ProxyToken        string   `json:"connectivity_token,omitempty"` // "ok" or the error
	Headers           []string `json:"headers"`
	Query             []string `json:"query_parameters"`
	Certificate       string   `json:"client_certificate,omitempty"`
	PrincipalProp     bool     `json:"principal_propagation"`
	UserDependent     bool     `json:"user_dependent"`
	AuthTokenExpiry   string   `json:"auth_token_expires_at,omitempty"`
	CacheExpiry       string   `json:"cache_expires_at"`
}

func runDestination(ctx context.Context, e *cmdEnv, o any) error {
	opts := o.(*DestinationOptions)
	if len(e.args) != 1 || strings.TrimSpace(e.args[0]) == "" {
		return badInputf("want exactly one destination NAME")
	}
	name := e.args[0]
	if opts.Timeout <= 0 {
		return badInputf("--timeout %v: want a positive duration", opts.Timeout)
	}
	user, err := secretFrom("user token", opts.UserToken, "CREDBROKER_USER_TOKEN", opts.UserTokenFile, "--user-token-file")
	if err != nil {
		return err
	}
	set, err := loadBindings(ctx, opts.BindingSourceOptions, e.log)
	if err != nil {
		return err
	}
	dest, err := pickService(set, opts.Binding, vcap.KindDestination, "--binding")
	if err != nil {
		return err
	}
	conn, err := pickService(set, opts.Connectivity, vcap.KindConnectivity, "--connectivity")
	if err != nil && opts.Connectivity != "" {
		return err
	}
	cfg := &sidecar.Config{Resolve: opts.Resolve, CAFile: opts.CAFile}
	n, err := broker.NewNetwork(cfg.CAFile, cfg.Resolve)
	if err != nil {
		return badInputf("%v", err)
	}
	log := e.log
	if !e.log.Enabled(ctx, slog.LevelDebug) {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := broker.New(broker.Options{}, broker.WithLogger(log))
	if err != nil {
		return err
	}
	defer b.Close()
	route := sidecar.Route{Name: "cli", Auth: sidecar.RouteAuth{Type: sidecar.AuthDestination, Destination: name, Binding: dest, Connectivity: conn, TenantMode: opts.TenantMode}}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	found, err := b.LookupDestination(ctx, set, n, cfg, route, destination.Request{Name: name, Tenant: opts.Tenant, UserToken: user})
	if err != nil {
		var de *destination.Error
		if errors.Is(err, broker.ErrConfig) || errors.As(err, &de) && (de.Reason == destination.ReasonNoUserToken || de.Reason == destination.ReasonUnsupportedType) {
			return badInputf("%v", err)
		}
		return fmt.Errorf("%w (reason %s)", err, reasonOf(err))
	}
	entry := found.Entry
	out := destinationOutput{
		Name: entry.Name, Binding: dest, Tenant: opts.Tenant, FromProvider: entry.FromProvider, Owner: entry.OwnerSubaccount,
		URL: entry.URL.Redacted(), Authentication: entry.Authentication, ProxyType: entry.ProxyType, LocationID: entry.LocationID,
		Headers: entry.HeaderNames(), PrincipalProp: entry.PrincipalPropagation, UserDependent: entry.UserDependent,
		CacheExpiry: entry.Expiry.UTC().Format(time.RFC3339),
	}
	sort.Strings(out.Headers)
	for k := range entry.Query {
		out.Query = append(out.Query, k)
	}
	sort.Strings(out.Query)
	if !entry.Destination.Expiry.IsZero() {
		out.AuthTokenExpiry = entry.Destination.Expiry.UTC().Format(time.RFC3339)
	}
	if ct := entry.Certificate; ct != nil && ct.Leaf != nil {
		out.Certificate = fmt.Sprintf("subject %q, not after %s", ct.Leaf.Subject.String(), ct.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if found.ConnectivityProxy != "" {
		out.ConnectivityProxy = found.ConnectivityProxy
		if found.ConnectivityErr != nil {
			out.ProxyToken = found.ConnectivityErr.Error()
		} else {
			out.ProxyToken = "ok"
		}
	}
	if opts.JSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("name", out.Name)
	row("binding", out.Binding)
	row("tenant", out.Tenant)
	if out.FromProvider {
		row("answered by", "the provider's instance")
	}
	row("url", out.URL)
	row("authentication", out.Authentication)
	row("proxy type", out.ProxyType)
	row("location id", out.LocationID)
	row("connectivity proxy", out.ConnectivityProxy)
	row("connectivity token", out.ProxyToken)
	row("headers", strings.Join(out.Headers, ", ")+redactedNote(len(out.Headers)))
	row("query parameters", strings.Join(out.Query, ", "))
	row("client certificate", out.Certificate)
	row("auth token expires", out.AuthTokenExpiry)
	row("cache expires", out.CacheExpiry)
	return tw.Flush()
}

func redactedNote(n int) string {
	if n == 0 {
		return ""
	}
	return " (values redacted)"
}

func reasonOf(err error) string {
	r, _ := destination.ReasonOf(err)
	if r == "" {
		return "unknown"
	}
	return r
}

// pickService returns the named binding, or the only binding of kind.
func pickService(set *vcap.Set, name, kind, flag string) (string, error) {
	if name != "" {
		b, err := set.ByName(name)
		if err != nil {
			return "", badInputf("%s %q: %v", flag, name, err)
		}
		if svc, ok := vcap.ServiceOf(b); !ok || svc.Kind != kind {
			return "", badInputf("%s %q: label %q is not a %s service binding", flag, name, b.Label, kind)
		}
		return name, nil
	}
	var found []string
	for _, b := range set.Bindings {
		if svc, ok := vcap.ServiceOf(b); ok && svc.Kind == kind {
			found = append(found, b.Name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", badInputf("no %s binding: bind the %s service or name one with %s", kind, kind, flag)
	}
	return "", badInputf("%d %s bindings (%s): choose one with %s", len(found), kind, strings.Join(found, ", "), flag)
}
