package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/tokenclient"
)

// TokenOptions are the flags of `credbroker token`. User secrets (password,
// refresh token) come from the environment or a file only, never from a
// flag: the command line is visible to every user of the machine.
type TokenOptions struct {
	BindingSourceOptions
	Binding       string        `flag:"binding" env:"CREDBROKER_BINDING" usage:"binding name (default: the preferred xsuaa binding by plan, else the IAS binding)"`
	Tenant        string        `flag:"tenant" env:"CREDBROKER_TENANT" usage:"subscriber subdomain: replaces the first host label of the token URL (not with --zid)"`
	ZID           string        `flag:"zid" env:"CREDBROKER_ZID" usage:"subscriber zone id, sent as X-zid to the tenant-agnostic uaadomain host (not with --tenant)"`
	Scopes        []string      `flag:"scope" env:"CREDBROKER_SCOPE" usage:"scope to ask for (default: every scope the client has)"`
	Grant         string        `flag:"grant" env:"CREDBROKER_GRANT" usage:"grant type: client_credentials, password, jwt-bearer or refresh_token" default:"client_credentials"`
	Assertion     string        `flag:"assertion" env:"CREDBROKER_ASSERTION" usage:"user JWT for --grant jwt-bearer (prefer the variable or --assertion-file: flags show in ps)"`
	AssertionFile string        `flag:"assertion-file" env:"CREDBROKER_ASSERTION_FILE" usage:"file holding the user JWT for --grant jwt-bearer"`
	Username      string        `flag:"username" env:"CREDBROKER_USERNAME" usage:"user for --grant password; the password comes from CREDBROKER_PASSWORD or --password-file"`
	PasswordFile  string        `flag:"password-file" env:"CREDBROKER_PASSWORD_FILE" usage:"file holding the password for --grant password"`
	RefreshFile   string        `flag:"refresh-token-file" env:"CREDBROKER_REFRESH_TOKEN_FILE" usage:"file holding the refresh token for --grant refresh_token (or CREDBROKER_REFRESH_TOKEN)"`
	Resource      string        `flag:"resource" env:"CREDBROKER_RESOURCE" usage:"IAS: resource parameter"`
	AppTID        string        `flag:"app-tid" env:"CREDBROKER_APP_TID" usage:"IAS: app_tid parameter (the tenant)"`
	JSON          bool          `flag:"json" env:"CREDBROKER_JSON" usage:"print the token response as JSON (with expires_at, token_url and auth) instead of the token alone"`
	Resolve       []string      `flag:"resolve" env:"CREDBROKER_RESOLVE" usage:"dial override PATTERN=ADDR, for example *.example.test=127.0.0.1 (names under .localhost always go to 127.0.0.1)"`
	CAFile        string        `flag:"ca-file" env:"CREDBROKER_CA_FILE" usage:"PEM CAs trusted for the token service in addition to the system roots (for example the mock's ca.crt)"`
	Timeout       time.Duration `flag:"timeout" env:"CREDBROKER_TIMEOUT" usage:"give up after this long, retries included" default:"30s"`

	// Secrets read from the environment only.
	Password     string `env:"CREDBROKER_PASSWORD"`
	RefreshToken string `env:"CREDBROKER_REFRESH_TOKEN"`
}

func init() {
	register(&command{
		name:    "token",
		summary: "fetch one access token for a binding and print it (or the JSON token response)",
		usage: "[--binding N] [--tenant SUBDOMAIN | --zid ZONE] [--scope S]... [--grant G] [--assertion JWT | --assertion-file F] " +
			"[--username U [--password-file F]] [--refresh-token-file F] [--resource R] [--app-tid T] [--timeout D] [--json] " +
			"[--resolve PATTERN=ADDR]... [--ca-file F] [--vcap-file F | --bindings-dir D] [--key-file K]",
		newOptions: func() any { return &TokenOptions{} },
		run:        runToken,
	})
}

// tokenOutput is what `token --json` prints.
type tokenOutput struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExpiresAt    string `json:"expires_at"`
	Scope        string `json:"scope"`
	JTI          string `json:"jti,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	TokenURL     string `json:"token_url"`
	Auth         string `json:"auth"`
	Binding      string `json:"binding"`
	Tenant       string `json:"tenant,omitempty"`
	ZoneID       string `json:"zone_id,omitempty"`
}

func runToken(ctx context.Context, e *cmdEnv, o any) error {
	opts := o.(*TokenOptions)
	if len(e.args) > 0 {
		return badInputf("unexpected argument %q", e.args[0])
	}
	req, err := tokenRequest(opts)
	if err != nil {
		return err
	}
	netOpts, err := tokenNetOptions(opts)
	if err != nil {
		return err
	}
	set, err := loadBindings(ctx, opts.BindingSourceOptions, e.log)
	if err != nil {
		return err
	}
	b, err := selectBinding(set, opts.Binding)
	if err != nil {
		return err
	}
	cfg, err := broker.TokenConfig(b)
	if err != nil {
		return err
	}
	if e.log.Enabled(ctx, slog.LevelDebug) {
		// The command prints its one error itself; the client's own
		// warnings would only repeat it, so they show at debug level only.
		netOpts = append(netOpts, tokenclient.WithLogger(e.log))
	}
	c, err := tokenclient.New(cfg, netOpts...)
	if err != nil {
		return badInputf("binding %q (%s): %v", b.Name, b.Source, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	tok, err := c.Token(ctx, req)
	if err != nil {
		if errors.Is(err, tokenclient.ErrInvalidRequest) {
			return badInputf("binding %q: %v", b.Name, err)
		}
		if errors.As(err, new(x509.UnknownAuthorityError)) {
			return fmt.Errorf("binding %q: %w (trust its CA with --ca-file)", b.Name, err)
		}
		return fmt.Errorf("binding %q: %w", b.Name, err)
	}
	if !opts.JSON {
		_, err = fmt.Fprintln(e.stdout, tok.AccessToken)
		return err
	}
	expiresIn := tok.ExpiresIn
	if expiresIn <= 0 {
		expiresIn = tok.Expiry.Sub(tok.IssuedAt)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(tokenOutput{
		AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresIn: int64(expiresIn / time.Second),
		ExpiresAt: tok.Expiry.UTC().Format(time.RFC3339), Scope: tok.Scope, JTI: tok.JTI, RefreshToken: tok.RefreshToken,
		TokenURL: tok.URL, Auth: string(b.Auth.Auth), Binding: b.Name, Tenant: req.Tenant, ZoneID: req.ZoneID,
	})
}

// tokenRequest checks the flags that describe the token and builds the
// request; every problem is bad input (exit 2).
func tokenRequest(o *TokenOptions) (tokenclient.Request, error) {
	var r tokenclient.Request
	if o.Tenant != "" && o.ZID != "" {
		return r, badInputf("--tenant and --zid: give one of them, not both")
	}
	if o.Timeout <= 0 {
		return r, badInputf("--timeout %v: want a positive duration", o.Timeout)
	}
	r.Tenant, r.ZoneID, r.Resource, r.AppTID = o.Tenant, o.ZID, o.Resource, o.AppTID
	for _, s := range o.Scopes {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			r.Scopes = append(r.Scopes, f)
		}
	}
	switch strings.ToLower(strings.TrimSpace(o.Grant)) {
	case "", "client_credentials", "client-credentials":
		r.Grant = tokenclient.GrantClientCredentials
	case "password":
		r.Grant = tokenclient.GrantPassword
		pw, err := secretFrom("password", o.Password, "CREDBROKER_PASSWORD", o.PasswordFile, "--password-file")
		if err != nil {
			return r, err
		}
		if o.Username == "" || pw == "" {
			return r, badInputf("--grant password needs --username and a password (CREDBROKER_PASSWORD or --password-file)")
		}
		r.Username, r.Password = o.Username, tokenclient.Secret(pw)
	case "jwt-bearer", "jwt_bearer", string(tokenclient.GrantJWTBearer):
		r.Grant = tokenclient.GrantJWTBearer
		a, err := secretFrom("assertion", o.Assertion, "--assertion", o.AssertionFile, "--assertion-file")
		if err != nil {
			return r, err
		}
		if a == "" {
			return r, badInputf("--grant jwt-bearer needs --assertion, CREDBROKER_ASSERTION or --assertion-file")
		}
		r.Assertion = tokenclient.Secret(a)
	case "refresh_token", "refresh-token":
		r.Grant = tokenclient.GrantRefreshToken
		rt, err := secretFrom("refresh token", o.RefreshToken, "CREDBROKER_REFRESH_TOKEN", o.RefreshFile, "--refresh-token-file")
		if err != nil {
			return r, err
		}
		if rt == "" {
			return r, badInputf("--grant refresh_token needs CREDBROKER_REFRESH_TOKEN or --refresh-token-file")
		}
		r.RefreshToken = tokenclient.Secret(rt)
	default:
		return r, badInputf("--grant %q: want client_credentials, password, jwt-bearer or refresh_token (- and _ are alike; the jwt-bearer URN works too)", o.Grant)
	}
	if r.Grant != tokenclient.GrantJWTBearer && (o.Assertion != "" || o.AssertionFile != "") {
		return r, badInputf("--assertion is only for --grant jwt-bearer")
	}
	return r, nil
}

// secretFrom takes a secret from a value or a file (not both); errors name
// the source, never the value.
func secretFrom(what, value, valueSource, file, fileFlag string) (string, error) {
	if file == "" {
		return strings.TrimSpace(value), nil
	}
	if value != "" {
		return "", badInputf("%s: give %s or %s, not both", what, valueSource, fileFlag)
	}
	b, err := inputfile.Read(file)
	if err != nil {
		return "", badInputf("%s %s: %v", fileFlag, file, errors.Unwrap(err))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", badInputf("%s %s: the file is empty", fileFlag, file)
	}
	return s, nil
}

// tokenNetOptions maps --resolve and --ca-file to client options: the
// same trust as every command (the system roots plus --ca-file).
func tokenNetOptions(o *TokenOptions) ([]tokenclient.Option, error) {
	n, err := broker.NewNetwork(o.CAFile, o.Resolve)
	if err != nil {
		return nil, badInput(flagError(err))
	}
	opts := []tokenclient.Option{
		tokenclient.WithDialContext(n.Dialer(nil)),
		// Retries and each attempt end a little before --timeout, so that
		// what timed out (the URL and the phase) is reported rather than
		// the bare deadline.
		tokenclient.WithRetry(tokenclient.RetryPolicy{MaxElapsed: o.Timeout * 9 / 10}),
		tokenclient.WithTimeout(o.Timeout * 9 / 10),
	}
	if roots := n.RootCAs(); roots != nil {
		opts = append(opts, tokenclient.WithRootCAs(roots))
	}
	return opts, nil
}
