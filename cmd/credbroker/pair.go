package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/netx"
)

type pairOptions struct {
	TokenURL     string        `flag:"token-url" env:"CREDBROKER_TOKEN_URL" usage:"the one-time token URL from the connector (prefer --token-url-file or the variable: a flag shows up in the process list)"`
	TokenURLFile string        `flag:"token-url-file" env:"CREDBROKER_TOKEN_URL_FILE" usage:"read the one-time token URL from this file"`
	CertDir      string        `flag:"cert-dir" env:"CREDBROKER_CERT_DIR" usage:"directory for tls.key (0600), tls.crt, ca.crt and connection.json; created when missing"`
	KeyType      string        `flag:"key-type" env:"CREDBROKER_KEY_TYPE" usage:"key algorithm: rsa2048, rsa4096 or ecdsa-p256 (default: the connector's key-algorithm, else rsa2048)"`
	RSAFallback  bool          `flag:"rsa-fallback" env:"CREDBROKER_RSA_FALLBACK" usage:"when the connector refuses an ECDSA CSR with a 5xx (its CA signs with RSA), retry the same CSR token with an RSA 2048 key"`
	CAFile       string        `flag:"ca-file" env:"CREDBROKER_CA_FILE" usage:"PEM CAs trusted, in addition to the system roots, for the connector's server certificate (as token and run do)"`
	Resolve      []string      `flag:"resolve" env:"CREDBROKER_RESOLVE" usage:"dial override PATTERN=ADDR, for example *.example.test=127.0.0.1 (names under .localhost always go to 127.0.0.1)"`
	Timeout      time.Duration `flag:"timeout" env:"CREDBROKER_TIMEOUT" usage:"give up after this long" default:"1m"`
}

func init() {
	register(&command{
		name:       "pair",
		summary:    "pair with a connector using a one-time token URL; writes the client certificate, key, CA and connection.json",
		usage:      "--token-url URL | --token-url-file F --cert-dir DIR [--key-type rsa2048|rsa4096|ecdsa-p256] [--rsa-fallback] [--ca-file F] [--resolve PATTERN=ADDR]... [--timeout D]",
		newOptions: func() any { return &pairOptions{} },
		run:        runPair,
	})
}

// pairInput is the validated input of the command.
type pairInput struct {
	tokenURL string
	dir      string
	keyType  connector.KeyType
	net      *broker.Network
}

func checkPairInput(opts *pairOptions, args []string) (*pairInput, error) {
	if len(args) > 0 {
		return nil, badInputf("unexpected argument %q", args[0])
	}
	in := &pairInput{}
	raw, source := opts.TokenURL, "--token-url"
	switch {
	case opts.TokenURL != "" && opts.TokenURLFile != "":
		return nil, badInputf("--token-url and --token-url-file are both set: give one")
	case opts.TokenURLFile != "":
		b, err := inputfile.Read(opts.TokenURLFile)
		if err != nil {
			return nil, badInputf("--token-url-file: %v", err)
		}
		raw, source = strings.TrimSpace(string(b)), "--token-url-file "+opts.TokenURLFile
	case opts.TokenURL == "":
		return nil, badInputf("--token-url (or --token-url-file, or CREDBROKER_TOKEN_URL) is required: the one-time token URL from the connector")
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil || u.Opaque != "":
		return nil, badInputf("%s: not a URL", source)
	case u.Hostname() == "":
		return nil, badInputf("%s: the URL has no host", source)
	}
	if err := netx.CheckCredentialURL(u); err != nil {
		return nil, badInputf("%s: %v", source, err)
	}
	if p := u.Port(); p != "" {
		if _, err := netPort(p); err != nil {
			return nil, badInputf("%s: port %q: %v", source, p, err)
		}
	}
	in.tokenURL = u.String()

	if opts.CertDir == "" {
		return nil, badInputf("--cert-dir is required")
	}
	if err := usableDir(opts.CertDir); err != nil {
		return nil, badInputf("--cert-dir %s: %v", opts.CertDir, err)
	}
	in.dir = opts.CertDir

	if opts.KeyType != "" {
		kt, err := connector.ParseKeyType(opts.KeyType)
		if err != nil {
			return nil, badInputf("--key-type %q: want rsa2048, rsa4096 or ecdsa-p256", opts.KeyType)
		}
		in.keyType = kt
	}
	// The same trust as every command: the system roots plus --ca-file.
	n, err := broker.NewNetwork(opts.CAFile, opts.Resolve)
	if err != nil {
		return nil, badInput(flagError(err))
	}
	in.net = n
	if opts.Timeout <= 0 {
		return nil, badInputf("--timeout %v: want a positive duration", opts.Timeout)
	}
	return in, nil
}

func netPort(p string) (int, error) {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number")
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, fmt.Errorf("out of range")
		}
	}
	return n, nil
}

// usableDir creates dir when missing and checks that files can be created in
// it: the one-time token must not be spent on a directory we cannot write.
func usableDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("not a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Probe with a directory of our own, as the write will.
	p, err := os.MkdirTemp(dir, ".credbroker-probe-*")
	if err != nil {
		return fmt.Errorf("not writable: %v", errors.Unwrap(err))
	}
	return os.Remove(p)
}

func runPair(ctx context.Context, e *cmdEnv, o any) error {
	opts := o.(*pairOptions)
	in, err := checkPairInput(opts, e.args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	conn, err := broker.Pair(ctx, broker.PairRequest{
		TokenURL:    in.tokenURL,
		Dir:         in.dir,
		KeyType:     in.keyType,
		RSAFallback: opts.RSAFallback,
	}, in.net, e.log)
	if err != nil {
		if errors.As(err, new(x509.UnknownAuthorityError)) && opts.CAFile == "" {
			return fmt.Errorf("%w (trust the connector's CA with --ca-file)", err)
		}
		return err
	}
	printPairSummary(e.stdout, in.dir, conn, time.Now())
	return nil
}

// flagError names the flag of a broker.NetworkError (--ca-file,
// --resolve) instead of its config key.
func flagError(err error) error {
	var ne *broker.NetworkError
	if errors.As(err, &ne) {
		flag := "--" + strings.ReplaceAll(ne.Field, "_", "-")
		if ne.Path != "" {
			flag += " " + ne.Path
		}
		return fmt.Errorf("%s: %v", flag, ne.Err)
	}
	return err
}

func keyName(k any) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k)
}

// printPairSummary prints what was paired. It prints no token: URLs that
// carry one (the runtime connector's) are shown without their query.
func printPairSummary(w io.Writer, dir string, conn *connector.Connection, now time.Time) {
	ci := conn.ConnectionInfo
	leaf := conn.Pairing.Leaf()
	fmt.Fprintf(w, "Paired with %s\n\n", ci.ConnectorURL)
	id := ci.Identity
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-18s %s\n", k+":", v)
		}
	}
	// A runtime's identity has no application, only group and tenant.
	var scope []string
	if id.Group != "" {
		scope = append(scope, fmt.Sprintf("group %q", id.Group))
	}
	if id.Tenant != "" {
		scope = append(scope, fmt.Sprintf("tenant %q", id.Tenant))
	}
	switch {
	case id.Application != "" && len(scope) > 0:
		row("application", id.Application+" ("+strings.Join(scope, ", ")+")")
	case id.Application != "":
		row("application", id.Application)
	case len(scope) > 0:
		row("runtime", strings.Join(scope, ", "))
	}
	row("subject", ci.Subject)
	row("sha256", ci.SHA256)
	row("serial", ci.Serial)
	row("key", keyName(conn.Pairing.Key))
	row("not after", fmt.Sprintf("%s (in %s)", ci.NotAfter.Format(time.RFC3339), ci.NotAfter.Sub(now).Round(time.Second)))
	row("issuer", leaf.Issuer.String())
	fmt.Fprintln(w)
	row("info", ci.InfoURL)
	row("metadata", ci.MetadataURL)
	row("events", ci.EventsURL)
	row("events info", ci.EventsInfoURL)
	row("renew", ci.RenewCertURL)
	row("revoke", ci.RevokeCertURL)
	if conn.Info != nil && conn.Info.RuntimeTokenURL() != "" {
		row("runtime connector", connector.RedactURL(conn.Info.RuntimeTokenURL())+" (second phase: `credbroker run` pairs it)")
	}
	if conn.InfoErr != nil {
		row("management info", "unavailable: "+conn.InfoErr.Error())
	}
	fmt.Fprintln(w)
	files := []string{"tls.key (0600)", "tls.crt", "ca.crt", "connection.json"} // DESIGN.md's names, as certwatch writes them
	fmt.Fprintf(w, "Wrote %s: %s\n", filepath.Clean(dir), strings.Join(files, ", "))
}
