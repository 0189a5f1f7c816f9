package main

// A command's job: what every command that runs starts with (its
// configuration and its deadline) and the resources it opens on the way
// (the ledger, the DS guard, the tokens), closed when it ends.

import (
	"context"
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/pinlock"
	"github.com/ods-keyguard/ods-keyguard/publish"
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
	return onLedger(ctx, c, cfg, false, func(l *ledger.Ledger) (*hooks.Guard, error) { return newGuard(c, cfg, l, log) })
}

// onLedger opens the ledger (readOnly: making nothing) and builds on it
// what a command works with; the function returned closes the ledger.
func onLedger[T any](ctx context.Context, c *cli.Context, cfg *config.Config, readOnly bool, build func(*ledger.Ledger) (T, error)) (T, func() error, error) {
	var none T
	l, err := openLedger(ctx, c, cfg, readOnly)
	if err != nil {
		return none, nil, err
	}
	t, err := build(l)
	if err != nil {
		l.Close()
		return none, nil, err
	}
	return t, l.Close, nil
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
	// journal is the ledger refused PINs are recorded in, when one was.
	journal *ledger.Ledger
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
	r := &job{c: c, cfg: cfg, ctx: ctx, cancel: cancel}
	cfg.RefusalJournal = r.journalRefusal
	return r, nil
}

// journalRefusal records a refused PIN in the ledger's log, on a ledger
// opened for it once (the token reads come before the command's own).
func (r *job) journalRefusal(ref pinlock.Refusal) error {
	if r.journal == nil {
		l, err := r.ledger(false)
		if err != nil {
			return err
		}
		r.journal = l
	}
	_, err := r.journal.Append(r.ctx, ledger.KindPINRefused, ref)
	return err
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

// dsBook opens the ledger read-only and reads the DS records.
func (r *job) dsBook() (*ledger.DSBook, error) {
	l, err := r.ledger(true)
	if err != nil {
		return nil, err
	}
	return l.DS(r.ctx)
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

// journalTo records a refused PIN in the log of the ledger o names,
// opened for writing for that alone: what check, which reads the ledger
// only, does when a token refuses a PIN (a user that cannot write the
// ledger gets an error, which the refusal's message carries).
func journalTo(o ledger.Options) func(pinlock.Refusal) error {
	return func(ref pinlock.Refusal) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o.ReadOnly = false
		l, err := ledger.New(ctx, o)
		if err != nil {
			return err
		}
		defer l.Close()
		_, err = l.Append(ctx, ledger.KindPINRefused, ref)
		return err
	}
}

// newGate is the publish gate on this host, its ledger opened (read-only
// for a dry run); the function returned closes it.
func newGate(ctx context.Context, c *cli.Context, cfg *config.Config, log publish.Logger, by string, dryRun bool) (*publish.Gate, func() error, error) {
	return onLedger(ctx, c, cfg, dryRun, func(l *ledger.Ledger) (*publish.Gate, error) { return gateOn(cfg, l, log, by) })
}

// gateOn is the publish gate on a ledger the caller opened (and closes).
func gateOn(cfg *config.Config, l *ledger.Ledger, log publish.Logger, by string) (*publish.Gate, error) {
	tokens, err := cfg.Tokens()
	if err != nil {
		return nil, err
	}
	return &publish.Gate{Config: cfg.PublishConfig(), StateDir: cfg.StateDir, StateGroup: cfg.StateGroup, Ledger: l,
		Source: source(cfg), Tokens: tokens, RequireBackup: cfg.RequireBackup(), Log: log, By: by}, nil
}
