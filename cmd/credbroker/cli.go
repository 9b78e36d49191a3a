package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/credbroker/credbroker/broker"
)

// Exit codes shared by every command (see DESIGN.md).
const (
	exitOK      = 0
	exitRuntime = 1
	exitInput   = 2
)

// command is one subcommand. Each lives in its own file and registers itself
// from init, so commands never edit each other's files.
type command struct {
	name    string
	summary string
	// usage is the synopsis line after "credbroker <name>".
	usage string
	// newOptions returns a pointer to the command's option struct. Every
	// exported field with a `flag` tag becomes a flag and an environment
	// variable (the `env` tag); flags win over the environment.
	newOptions func() any
	// run executes the command. It returns an error wrapped with
	// errBadInput for exit code 2, any other error for exit code 1.
	run func(ctx context.Context, e *cmdEnv, opts any) error
	// interspersed lets flags follow positional arguments
	// (`credbroker destination NAME --tenant T`).
	interspersed bool
}

// cmdEnv is what a command gets from the framework.
type cmdEnv struct {
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	args   []string // positional arguments left after the flags
	// setFlags holds the flags given on the command line (not those
	// that only took a value from the environment).
	setFlags map[string]bool
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("credbroker: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errBadInput marks errors caused by bad input or configuration (exit 2).
var errBadInput = errors.New("bad input")

// badInputError carries a message for exit code 2 without repeating "bad input".
type badInputError struct{ err error }

func (e *badInputError) Error() string        { return e.err.Error() }
func (e *badInputError) Unwrap() []error      { return []error{e.err, errBadInput} }
func badInput(err error) error                { return &badInputError{err: err} }
func badInputf(format string, a ...any) error { return badInput(fmt.Errorf(format, a...)) }

// globalOptions are accepted by every command.
type globalOptions struct {
	LogLevel  string `flag:"log-level" env:"CREDBROKER_LOG_LEVEL" usage:"log level: debug, info, warn or error" default:"info"`
	LogFormat string `flag:"log-format" env:"CREDBROKER_LOG_FORMAT" usage:"log format on stderr: text or json" default:"text"`
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fs, _, _ := newFlagSet(c, io.Discard)
				printCommandHelp(stdout, c, fs)
				return exitOK
			}
		}
		printMainHelp(stdout)
		if len(args) == 0 {
			return exitInput
		}
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "credbroker: unknown command %q\n\n", args[0])
		printMainHelp(stderr)
		return exitInput
	}
	fs, opts, global := newFlagSet(c, stderr)
	// Order: defaults (set when flags are bound), then the environment, then flags.
	if err := parseEnv(opts); err != nil {
		fmt.Fprintf(stderr, "credbroker %s: environment: %v\n", c.name, err)
		return exitInput
	}
	if err := parseEnv(global); err != nil {
		fmt.Fprintf(stderr, "credbroker %s: environment: %v\n", c.name, err)
		return exitInput
	}
	err := fs.Parse(args[1:])
	var positional []string
	for err == nil && c.interspersed && fs.NArg() > 0 && (len(args) < 2 || args[len(args)-fs.NArg()-1] != "--") {
		rest := fs.Args()
		positional = append(positional, rest[0])
		err = fs.Parse(rest[1:])
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(stdout, c, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "Run 'credbroker %s --help' for its flags.\n", c.name)
		return exitInput
	}
	logger, err := newLogger(stderr, global.LogLevel, global.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "credbroker %s: %v\n", c.name, err)
		return exitInput
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &cmdEnv{stdout: stdout, stderr: stderr, log: logger, args: append(positional, fs.Args()...), setFlags: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { e.setFlags[f.Name] = true })
	if err := c.run(ctx, e, opts); err != nil {
		fmt.Fprintf(stderr, "credbroker %s: %v\n", c.name, err)
		return exitCode(err)
	}
	return exitOK
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errBadInput) || errors.Is(err, broker.ErrConfig) {
		return exitInput
	}
	return exitRuntime
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, badInputf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	default:
		return nil, badInputf("--log-format %q: want text or json", format)
	}
}

func newFlagSet(c *command, stderr io.Writer) (*flag.FlagSet, any, *globalOptions) {
	fs := flag.NewFlagSet("credbroker "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts any = &struct{}{}
	if c.newOptions != nil {
		opts = c.newOptions()
	}
	global := &globalOptions{}
	bindFlags(fs, opts)
	bindFlags(fs, global)
	fs.Usage = func() {} // help goes to stdout, errors to stderr: see run
	return fs, opts, global
}

// bindFlags registers a flag for every field of *opts tagged `flag:"name"`,
// with the `default` tag as default and `usage` (plus the env variable) as
// help. Embedded structs are option groups shared by several commands; their
// fields are bound too.
func bindFlags(fs *flag.FlagSet, opts any) {
	v := reflect.ValueOf(opts).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if !f.IsExported() {
				panic("credbroker: option group " + f.Type.Name() + " must be an exported type")
			}
			bindFlags(fs, v.Field(i).Addr().Interface()) // shared option groups
			continue
		}
		if name == "" {
			continue
		}
		usage := f.Tag.Get("usage")
		if ev := f.Tag.Get("env"); ev != "" {
			usage += " (env " + ev + ")"
		}
		def := f.Tag.Get("default")
		p := v.Field(i).Addr().Interface()
		switch p := p.(type) {
		case *string:
			fs.StringVar(p, name, def, usage)
		case *bool:
			b, _ := strconv.ParseBool(def)
			fs.BoolVar(p, name, b, usage)
		case *int:
			n, _ := strconv.Atoi(def)
			fs.IntVar(p, name, n, usage)
		case *time.Duration:
			d, _ := time.ParseDuration(def)
			fs.DurationVar(p, name, d, usage)
		case *[]string:
			fs.Var(&listFlag{p: p}, name, usage+" (repeatable)")
		default:
			panic(fmt.Sprintf("credbroker: flag %s: unsupported type %s", name, f.Type))
		}
	}
}

// parseEnv reads the `env` tags of *opts. Variables that are not set leave the
// field (its flag default) alone. An error names the variable and what it
// wants (`CREDBROKER_ALLOW_NON_LOOPBACK: want true/false, got "yes"`),
// never the Go field.
func parseEnv(opts any) error {
	err := env.ParseWithOptions(opts, env.Options{TagName: "env"})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	vars := envVars(reflect.TypeOf(opts).Elem())
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) || vars[pe.Name] == "" {
			msgs = append(msgs, e.Error())
			continue
		}
		msgs = append(msgs, envValueError(vars[pe.Name], pe.Type, os.Getenv(vars[pe.Name])))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// envVars maps the Go field names of an option struct (and its embedded
// option groups) to their variables.
func envVars(t reflect.Type) map[string]string {
	out := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range envVars(f.Type) {
				out[k] = v
			}
			continue
		}
		if ev := f.Tag.Get("env"); ev != "" {
			out[f.Name] = ev
		}
	}
	return out
}

// envValueError says what a variable of type t wants. Only values of
// booleans, numbers and durations reach here (strings cannot fail to parse),
// so quoting the value shows no secret; it is cut short anyway.
func envValueError(name string, t reflect.Type, value string) string {
	if len(value) > 40 {
		value = value[:40] + "…"
	}
	want := "a " + t.String()
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		want = "a duration with a unit, such as 20s or 1m30s"
		if _, err := strconv.ParseFloat(value, 64); err == nil {
			want = fmt.Sprintf("a duration with a unit, such as %ss", value)
		}
	case t.Kind() == reflect.Bool:
		want = "true/false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		want = "an integer"
	}
	return fmt.Sprintf("%s: want %s, got %q", name, want, value)
}

// listFlag is a repeatable flag; the environment form is comma-separated.
// The first use on the command line replaces what the environment gave.
type listFlag struct {
	p       *[]string
	touched bool
}

func (l *listFlag) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.touched {
		*l.p = nil
		l.touched = true
	}
	*l.p = append(*l.p, v)
	return nil
}

func printMainHelp(w io.Writer) {
	fmt.Fprintln(w, "credbroker: a credential broker for apps with service bindings.")
	fmt.Fprintln(w, "\nUsage: credbroker <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'credbroker <command> --help' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 runtime failure, 2 bad input or configuration.")
}

// printCommandHelp prints the synopsis and every flag in the form the
// command line takes it (`--name VALUE`), with its variable and default.
// The global flags (--log-level, --log-format) close the synopsis.
func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	usage := strings.TrimSpace(c.usage + " " + globalSynopsis)
	fmt.Fprintf(w, "Usage: credbroker %s %s\n\n%s\n\nFlags:\n", c.name, usage, c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if isBoolFlag(f) {
			arg = ""
		} else if arg == "" {
			arg = "value"
		}
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && d != "[]" {
			if arg == "string" {
				d = strconv.Quote(d)
			}
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}

// globalSynopsis is the synopsis of the flags every command takes.
const globalSynopsis = "[--log-level L] [--log-format text|json]"

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
