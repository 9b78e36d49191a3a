package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/internal/tracing"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// RunOptions are the flags of `credbroker run`. The config file holds the
// routes and certificates; these flags override or extend its top-level
// settings (a flag wins over the file, the file over the default).
type RunOptions struct {
	BindingSourceOptions
	Config           string        `flag:"config" env:"CREDBROKER_CONFIG" usage:"YAML config file: listen, admin_listen, routes, certificates, token_api, … (see docs/configuration.md)"`
	Listen           string        `flag:"listen" env:"CREDBROKER_LISTEN" usage:"proxy and token API address, overrides listen: (default 127.0.0.1:8411)"`
	AdminListen      string        `flag:"admin-listen" env:"CREDBROKER_ADMIN_LISTEN" usage:"admin address for /healthz /readyz /metrics /status, overrides admin_listen: (default 127.0.0.1:9411)"`
	AllowNonLoopback bool          `flag:"allow-non-loopback" env:"CREDBROKER_ALLOW_NON_LOOPBACK" usage:"allow listen addresses beyond loopback (anyone who can reach the proxy can use its credentials)"`
	Resolve          []string      `flag:"resolve" env:"CREDBROKER_RESOLVE" usage:"dial override PATTERN=ADDR for upstreams, auth servers and connectors, added to resolve: (names under .localhost go to loopback: 127.0.0.1, or on port 443 the address of credbroker mock's role)"`
	CAFile           string        `flag:"ca-file" env:"CREDBROKER_CA_FILE" usage:"PEM CAs trusted (with the system roots) for upstreams, auth servers and connectors; overrides ca_file:"`
	DrainTimeout     time.Duration `flag:"drain-timeout" env:"CREDBROKER_DRAIN_TIMEOUT" usage:"how long SIGTERM waits for in-flight requests; overrides drain_timeout: (default 20s)"`
	PollInterval     time.Duration `flag:"poll-interval" env:"CREDBROKER_POLL_INTERVAL" usage:"how often the config, bindings and certificates are re-read in case a file event was missed" default:"30s"`
	TokenCacheDir    string        `flag:"token-cache-dir" env:"CREDBROKER_TOKEN_CACHE_DIR" usage:"keep valid tokens in files under DIR/credbroker-tokens (0700) and load them at start; overrides token_cache_dir: (a memory-backed volume, e.g. an emptyDir with medium Memory)"`
	AccessLog        string        `flag:"access-log" env:"CREDBROKER_ACCESS_LOG" usage:"turn the per-request access log on and append it to FILE (- for standard output); overrides access_log.enabled and access_log.path"`
	AccessLogFormat  string        `flag:"access-log-format" env:"CREDBROKER_ACCESS_LOG_FORMAT" usage:"access log format, json or text; overrides access_log.format (default json)"`
	AccessLogSample  string        `flag:"access-log-sample" env:"CREDBROKER_ACCESS_LOG_SAMPLE" usage:"share of successful requests the access log records, 0 to 1 (refusals and errors are always recorded); overrides access_log.sample (default 1)"`
	PersistSecret    string        `flag:"persist-kubernetes-secret" env:"CREDBROKER_PERSIST_KUBERNETES_SECRET" usage:"keep the pair of the certificate that pairs at start (pairing_url_file) in the Kubernetes Secret [NAMESPACE/]NAME, shared by replicas; sets its persist.kubernetes_secret: (the API server from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)"`
	ServiceAccount   string        `flag:"service-account-dir" env:"CREDBROKER_SERVICE_ACCOUNT_DIR" usage:"the service account's token, ca.crt and namespace for persist.kubernetes_secret: (the token is read again before every request)" default:"/var/run/secrets/kubernetes.io/serviceaccount"`
}

func init() {
	register(&command{
		name:    "run",
		summary: "the sidecar: a loopback proxy that adds credentials to the app's outbound calls, a token API, health and metrics",
		usage: "[--config FILE] [--listen ADDR] [--admin-listen ADDR] [--allow-non-loopback] [--resolve PATTERN=ADDR]... [--ca-file F] " +
			"[--drain-timeout D] [--poll-interval D] [--token-cache-dir DIR] [--persist-kubernetes-secret [NS/]NAME] [--service-account-dir DIR] " +
			"[--access-log FILE] [--access-log-format json|text] [--access-log-sample F] " +
			"[--vcap-file F | --bindings-dir D] [--key-file K]",
		newOptions: func() any { return &RunOptions{} },
		run: func(ctx context.Context, e *cmdEnv, opts any) error {
			return runRun(ctx, e, opts.(*RunOptions))
		},
	})
}

func runRun(ctx context.Context, e *cmdEnv, o *RunOptions) error {
	if err := o.check(e); err != nil {
		return err
	}
	if kind, display := o.sources().Chosen(); kind != "" {
		if ign := o.ignored(); len(ign) > 0 {
			e.log.Warn("binding sources: the first one set wins, others are ignored", "source", display, "ignored", strings.Join(ign, ","))
		}
	}
	clk, err := processClock()
	if err != nil {
		return err
	}
	bo, err := o.brokerOptionsEnv()
	if err != nil {
		return err
	}
	b, err := broker.New(bo, broker.WithLogger(e.log), broker.WithClock(clk))
	if err != nil {
		return err
	}
	defer b.Close()

	// SIGHUP reloads; the framework's context covers SIGINT and SIGTERM.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				e.log.Info("SIGHUP: reloading the configuration and bindings")
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	err = b.Run(ctx, reload)
	blameOverrides(err, e, o)
	if err != nil && isConfigError(err) {
		return badInput(err)
	}
	return err
}

// check refuses arguments and flag values run and validate cannot use.
func (o *RunOptions) check(e *cmdEnv) error {
	if len(e.args) > 0 {
		return badInputf("unexpected argument %q", e.args[0])
	}
	if o.PollInterval <= 0 {
		return badInputf("--poll-interval %v: want a positive duration", o.PollInterval)
	}
	if o.DrainTimeout < 0 {
		return badInputf("--drain-timeout %v: must not be negative", o.DrainTimeout)
	}
	if _, err := o.accessLogSample(); err != nil {
		return err
	}
	return nil
}

// ignoredSources is validate's warning that more than one binding source
// is set ("" when not): the first one wins (run logs the same with attributes).
func (o *RunOptions) ignoredSources() string {
	if kind, display := o.sources().Chosen(); kind != "" {
		if ign := o.ignored(); len(ign) > 0 {
			return fmt.Sprintf("binding sources: the first one set wins, others are ignored: using %s, ignoring %s", display, strings.Join(ign, ", "))
		}
	}
	return ""
}

// brokerOptions are the settings the flags lay over the config file.
// brokerOptionsEnv is brokerOptions with the OTEL_* variables
// (docs/observability.md), read alike by run and validate: a value run
// refuses, validate refuses too.
func (o *RunOptions) brokerOptionsEnv() (broker.Options, error) {
	bo := o.brokerOptions()
	ts, err := tracing.FromEnv(os.LookupEnv)
	if err != nil {
		return bo, badInputf("%v", err)
	}
	bo.Tracing = ts
	return bo, nil
}

func (o *RunOptions) brokerOptions() broker.Options {
	sample, _ := o.accessLogSample() // check refused a bad value
	return broker.Options{
		ConfigFile:       o.Config,
		Listen:           o.Listen,
		AdminListen:      o.AdminListen,
		AllowNonLoopback: o.AllowNonLoopback,
		Resolve:          o.Resolve,
		CAFile:           o.CAFile,
		DrainTimeout:     o.DrainTimeout,
		PollInterval:     o.PollInterval,
		Bindings:         o.sources(),
		KeyFile:          o.KeyFile,
		TokenCacheDir:    o.TokenCacheDir,
		AccessLog:        o.AccessLog,
		AccessLogFormat:  o.AccessLogFormat,
		AccessLogSample:  sample,
		PersistSecret:    o.PersistSecret,
		Kubernetes: broker.KubernetesAPI{
			Host:              os.Getenv("KUBERNETES_SERVICE_HOST"),
			Port:              os.Getenv("KUBERNETES_SERVICE_PORT"),
			ServiceAccountDir: o.ServiceAccount,
		},
	}
}

// accessLogSample parses --access-log-sample (nil when not set).
func (o *RunOptions) accessLogSample() (*float64, error) {
	if o.AccessLogSample == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(o.AccessLogSample, 64)
	if err != nil || !(f >= 0 && f <= 1) {
		return nil, badInputf("--access-log-sample %q: want a number from 0 to 1", o.AccessLogSample)
	}
	return &f, nil
}

// isConfigError reports whether err is bad configuration or bad bindings
// (exit 2) rather than a runtime failure.
func isConfigError(err error) bool {
	var ce *sidecar.ConfigError
	var ve *vcap.Error
	return errors.As(err, &ce) || errors.As(err, &ve) || errors.Is(err, errBadInput) || errors.Is(err, broker.ErrConfig)
}
