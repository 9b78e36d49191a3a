package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

type bindingsOptions struct {
	BindingSourceOptions
	JSON bool `flag:"json" env:"CREDBROKER_JSON" usage:"print a JSON array instead of a table"`
}

func init() {
	register(&command{
		name:       "bindings",
		summary:    "list every service binding found and how credbroker would authenticate with it (secrets redacted)",
		usage:      "[--json] [--vcap-file F | --bindings-dir D] [--key-file K]",
		newOptions: func() any { return &bindingsOptions{} },
		run:        runBindings,
	})
}

// bindingView is one element of `bindings --json` (DESIGN.md). It holds no
// secret: only names, URLs, dates and problem texts. Kind, ServiceURL and
// Proxy are set for destination and connectivity bindings only (whose Auth
// is the OAuth client credbroker fetches their tokens with).
type bindingView struct {
	Name           string   `json:"name"`
	Label          string   `json:"label"`
	Plan           string   `json:"plan"`
	InstanceName   string   `json:"instance_name"`
	CredentialType string   `json:"credential_type"`
	Auth           string   `json:"auth"`
	TokenURL       string   `json:"token_url"`
	CertNotAfter   string   `json:"cert_not_after,omitempty"`
	Kind           string   `json:"kind,omitempty"`
	ServiceURL     string   `json:"service_url,omitempty"`
	Proxy          string   `json:"proxy,omitempty"`
	Problems       []string `json:"problems"`
}

func viewOf(b *vcap.Binding) bindingView {
	v := bindingView{
		Name: b.Name, Label: b.Label, Plan: b.Plan, InstanceName: b.InstanceName,
		Auth: string(vcap.AuthNone), Problems: append([]string{}, b.Problems...),
	}
	a := b.Auth
	if svc, ok := vcap.ServiceOf(b); ok {
		// A destination or connectivity binding: not an auth binding, but
		// an OAuth client all the same (tokens per tenant for the service).
		v.Kind, v.ServiceURL, a = svc.Kind, svc.URI, svc.Auth
		if svc.ProxyHost != "" && svc.ProxyPort != "" {
			v.Proxy = net.JoinHostPort(svc.ProxyHost, svc.ProxyPort)
		}
		v.Problems = append([]string{}, svc.Problems...)
	}
	if a != nil {
		v.CredentialType = a.CredentialType
		v.Auth = string(a.Auth)
		if a.Auth == vcap.AuthNone {
			v.TokenURL = ""
			return v
		}
		v.TokenURL = a.TokenURL
		if !a.CertificateExpiresAt.IsZero() {
			v.CertNotAfter = a.CertificateExpiresAt.UTC().Format(time.RFC3339)
		}
	}
	return v
}

func runBindings(ctx context.Context, e *cmdEnv, o any) error {
	opts := o.(*bindingsOptions)
	if len(e.args) > 0 {
		return badInputf("unexpected argument %q", e.args[0])
	}
	set, err := loadBindings(ctx, opts.BindingSourceOptions, e.log)
	if err != nil {
		return err
	}
	views := make([]bindingView, 0, set.Len())
	for _, b := range set.Bindings {
		views = append(views, viewOf(b))
	}
	if opts.JSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(views); err != nil {
			return err
		}
	} else {
		printBindingsTable(e, set.Source, views)
	}
	if err := problemsError(set); err != nil {
		return err
	}
	return serviceProblemsError(views)
}

// serviceProblemsError is exit 2 for destination and connectivity
// bindings that credbroker could not use (their problems are the service
// view's, beyond the binding's own).
func serviceProblemsError(views []bindingView) error {
	var lines []string
	n := 0
	for _, v := range views {
		if v.Kind == "" || len(v.Problems) == 0 {
			continue
		}
		n++
		for _, p := range v.Problems {
			lines = append(lines, fmt.Sprintf("  binding %q (%s): %s", v.Name, v.Kind, p))
		}
	}
	if n == 0 {
		return nil
	}
	return badInputf("%d of %d bindings have problems:\n%s", n, len(views), strings.Join(lines, "\n"))
}

func printBindingsTable(e *cmdEnv, source string, views []bindingView) {
	fmt.Fprintf(e.stdout, "Bindings from %s:\n\n", source)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLABEL\tPLAN\tINSTANCE\tCREDENTIAL-TYPE\tAUTH\tTOKEN-URL\tCERT-NOT-AFTER\tSTATUS")
	for _, v := range views {
		status := "ok"
		if n := len(v.Problems); n > 0 {
			status = fmt.Sprintf("%d problem(s)", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			dash(v.Name), dash(v.Label), dash(v.Plan), dash(v.InstanceName), dash(v.CredentialType),
			v.Auth, dash(v.TokenURL), dash(v.CertNotAfter), status)
	}
	_ = tw.Flush()
	printServicesTable(e, views)
	var probs []string
	for _, v := range views {
		probs = append(probs, v.Problems...)
	}
	if len(probs) > 0 {
		fmt.Fprintf(e.stdout, "\nProblems:\n  %s\n", strings.Join(probs, "\n  "))
	}
}

// printServicesTable lists what the destination and connectivity
// bindings point at.
func printServicesTable(e *cmdEnv, views []bindingView) {
	header := false
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, v := range views {
		if v.Kind == "" {
			continue
		}
		if !header {
			fmt.Fprintf(e.stdout, "\nDestination and connectivity services:\n\n")
			fmt.Fprintln(tw, "NAME\tKIND\tSERVICE-URL\tPROXY")
			header = true
		}
		proxy := dash(v.Proxy)
		if v.Kind == vcap.KindConnectivity && v.Proxy == "" {
			proxy = "- (the binding names none: destinations.connectivity_proxy, by default " + sidecar.DefaultConnectivityProxy + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(v.Name), v.Kind, dash(v.ServiceURL), proxy)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	// Binding names and labels come from the bindings: control bytes and
	// invalid UTF-8 are escaped so that a hostile binding cannot forge table
	// lines or drive the terminal.
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == utf8.RuneError }) >= 0 {
		q := strconv.Quote(s)
		return q[1 : len(q)-1]
	}
	return s
}
