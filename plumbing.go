package main

// What several commands share: the configuration, the ledger, the DS guard,
// time limits and JSON output.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// noArgs refuses positional arguments for commands that take none.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("%s: unexpected argument %q", c.Command.Name, c.Args().First())
	}
	return nil
}

// loadConfig reads the configuration named by --config or its defaults.
// check takes --config after its name too (a plugin's command line), so
// the innermost --config given wins: one before the command is not hidden
// by check's own, unset flag of the same name.
func loadConfig(c *cli.Context) (*config.Config, error) {
	return config.Load(config.Path(configFlag(c)))
}

func configFlag(c *cli.Context) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("config") && ctx.String("config") != "" {
			return ctx.String("config")
		}
	}
	return ""
}

// openLedger opens the ledger; a writer that has to wait for the lock says
// so on stderr. readOnly makes nothing: check, run by the monitoring user.
func openLedger(ctx context.Context, c *cli.Context, cfg *config.Config, readOnly bool) (*ledger.Ledger, error) {
	o, err := cfg.LedgerOptions(c.App.ErrWriter, readOnly)
	if err != nil {
		return nil, err
	}
	return ledger.New(ctx, o)
}

// openGuard opens the ledger for writing and gives the DS guard on it,
// and what closes the ledger.
func openGuard(ctx context.Context, c *cli.Context, cfg *config.Config, log hooks.Logger) (*hooks.Guard, func() error, error) {
	l, err := openLedger(ctx, c, cfg, false)
	if err != nil {
		return nil, nil, err
	}
	g, err := newGuard(c, cfg, l, log)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return g, l.Close, nil
}

// newGuard is the DS guard on a ledger the caller opened (and closes).
func newGuard(c *cli.Context, cfg *config.Config, l *ledger.Ledger, log hooks.Logger) (*hooks.Guard, error) {
	tokens, err := cfg.Tokens()
	if err != nil {
		return nil, err
	}
	return &hooks.Guard{
		Ledger: l, Source: source(cfg), Tokens: tokens, RequireBackup: cfg.RequireBackup(),
		SubmitForward: cfg.Hooks.DSSubmitForward, RetractForward: cfg.Hooks.DSRetractForward,
		Parent: cfg.ParentConfig(), Log: log, Stdout: c.App.Writer, Stderr: c.App.ErrWriter,
	}, nil
}

// source reads the enforcer's database and the tokens, for real.
func source(cfg *config.Config) inventory.Source {
	return inventory.Live{Datastore: cfg.ODS.Datastore}
}

// timeoutFlag is -t/--timeout SECONDS: the command answers within it.
func timeoutFlag(def time.Duration) cli.Flag {
	return &cli.Float64Flag{Name: "timeout", Aliases: []string{"t"}, Value: def.Seconds(),
		Usage: "answer within `SECONDS`: a token, the database or the enforcer that does not answer by then is reported as such"}
}

// deadline is the command's context bounded by --timeout.
func deadline(c *cli.Context) (context.Context, context.CancelFunc, error) {
	t := time.Duration(c.Float64("timeout") * float64(time.Second))
	if t <= 0 {
		return nil, nil, usagef("%s: --timeout %v: must be more than zero", c.Command.Name, c.Float64("timeout"))
	}
	ctx, cancel := context.WithTimeout(c.Context, t)
	return ctx, cancel, nil
}

// job is what a command works with: its configuration, its deadline, and
// what it opened, closed by end.
type job struct {
	c      *cli.Context
	cfg    *config.Config
	ctx    context.Context
	cancel context.CancelFunc
	closes []func() error
}

// begin refuses positional arguments, loads the configuration and starts
// the command's deadline (--timeout).
func begin(c *cli.Context) (*job, error) {
	if err := noArgs(c); err != nil {
		return nil, err
	}
	return start(c)
}

// withJob is the action of a command that takes no arguments: f runs
// with the configuration loaded and the deadline started, and what it
// opened is closed after it.
func withJob(f func(r *job) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		r, err := begin(c)
		if err != nil {
			return err
		}
		defer r.end()
		return f(r)
	}
}

// start is begin for a command that takes arguments.
func start(c *cli.Context) (*job, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := deadline(c)
	if err != nil {
		return nil, err
	}
	return &job{c: c, cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// ledger opens the ledger within the deadline; end closes it.
func (r *job) ledger(readOnly bool) (*ledger.Ledger, error) {
	l, err := openLedger(r.ctx, r.c, r.cfg, readOnly)
	if err != nil {
		return nil, err
	}
	r.closes = append(r.closes, l.Close)
	return l, nil
}

// ceremonies opens the ledger and reads the ceremonies.
func (r *job) ceremonies(readOnly bool) (*ledger.Ledger, *ledger.Store, error) {
	l, err := r.ledger(readOnly)
	if err != nil {
		return nil, nil, err
	}
	store, err := l.Ceremonies(r.ctx)
	return l, store, err
}

// guard is the DS guard, logging to syslog; end closes what it opened.
func (r *job) guard() (*hooks.Guard, error) {
	log := hooks.NewSyslog(r.cfg.ODS.SyslogFacility, r.c.App.ErrWriter)
	r.closes = append(r.closes, func() error { log.Close(); return nil })
	g, closeLedger, err := openGuard(r.ctx, r.c, r.cfg, log)
	if err != nil {
		return nil, err
	}
	r.closes = append(r.closes, closeLedger)
	return g, nil
}

// snapshot reads the database and every repository's and mirror's token.
func (r *job) snapshot(req hsmcheck.Request) (*inventory.Snapshot, error) {
	tokens, err := r.cfg.Tokens()
	if err != nil {
		return nil, err
	}
	return inventory.Take(r.ctx, source(r.cfg), tokens, req)
}

// end closes what the command opened and ends its deadline.
func (r *job) end() {
	for i := len(r.closes) - 1; i >= 0; i-- {
		r.closes[i]()
	}
	r.cancel()
}

// defaultTimeout bounds the commands an operator runs by hand.
const defaultTimeout = 120 * time.Second

// unreadable is the error of a report that is printed all the same: one
// per token that could not be read, exit status 3; nil when all were read.
func unreadable(results []hsmcheck.Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return exit(exitUnknown, errors.Join(errs...))
}

// output prints a command's result: its JSON document with --json, else
// its text.
func output(c *cli.Context, doc any, text func(io.Writer) error) error {
	if c.Bool("json") {
		return writeJSON(c.App.Writer, doc)
	}
	return text(c.App.Writer)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print a JSON document"} }

// buildVersion is the package's version, set at build time by make build
// and make deb (-ldflags -X main.buildVersion=...; packaging/version.sh):
// one version in the package, --version and check -V.
var buildVersion string

// version is the package's version, else the module version and the
// commit the binary was built from (go build by hand).
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v != "(devel)" && v != "" {
		return v // a pseudo-version carries the commit already
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			v += " " + s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			v += "+dirty"
		}
	}
	return v
}

// jsonCommand is the schema name of the command that args run (hook
// pending: hook-pending) when that command prints JSON and --json is among
// its arguments; "" otherwise. It reads args as given, so that a failure
// before the command's action (a bad flag, the configuration) still gets
// the document its caller asked for.
func jsonCommand(app *cli.App, args []string) string {
	cmds, path := app.Commands, []string(nil)
	var cmd *cli.Command
	i := 1
	for i < len(args) {
		a := args[i]
		i++
		if a == "--" {
			return ""
		}
		if cmd != nil && len(cmd.Subcommands) == 0 {
			if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
				return strings.Join(path, "-")
			}
			continue
		}
		if strings.HasPrefix(a, "-") {
			if (a == "--config" || a == "-config") && i < len(args) {
				i++
			}
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			return ""
		}
		cmd, cmds, path = next, next.Subcommands, append(path, next.Name)
		if len(cmds) == 0 && !hasFlag(cmd, "json") {
			return ""
		}
	}
	return ""
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// failureDocument is what a --json command prints when it fails before it
// has a document of its own: its schema, and the error with the exit
// status. The backup commands' documents carry their error as a string
// already (ok false); check prints its UNKNOWN verdict itself.
func failureDocument(name string, code int, msg string) any {
	schema := "ods-keyguard/" + name + "/1"
	switch name {
	case "backup-prepare", "backup-done", "backup-rollback":
		return struct {
			Schema     string `json:"schema"`
			OK         bool   `json:"ok"`
			Error      string `json:"error"`
			Ceremonies []any  `json:"ceremonies"`
			Messages   []any  `json:"messages"`
		}{schema, false, msg, []any{}, []any{}}
	}
	type failure struct {
		Message    string `json:"message"`
		ExitStatus int    `json:"exit_status"`
	}
	return struct {
		Schema string  `json:"schema"`
		Error  failure `json:"error"`
	}{schema, failure{msg, code}}
}
