package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

func hookCommand() *cli.Command {
	return &cli.Command{
		Name:        "hook",
		Usage:       "the enforcer's DS hooks: forward only keys whose backup is verified, never break the chain",
		Description: `The manual: man ods-keyguard.`,
		Subcommands: []*cli.Command{
			{
				Name:      "ds-submit",
				Usage:     "read DNSKEYs on stdin, forward those whose backup is verified",
				UsageText: "ods-keyguard hook ds-submit < DNSKEY-lines",
				Description: `Exit status: 0 forwarded; 1 withheld, rejected, or approved but kept back
because no forward command is configured; the forward command's status when
it failed. A run never takes longer than [hooks] timeout (default 20s).
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{ckaIDFlag()},
				Action: func(c *cli.Context) error { return runHook(c, ledger.Submit) },
			},
			{
				Name:      "ds-retract",
				Usage:     "read DNSKEYs on stdin, forward the retractions that leave the chain intact",
				UsageText: "ods-keyguard hook ds-retract < DNSKEY-lines",
				Description: `Exit status: 0 forwarded (or not needed: the DS never went to the parent);
1 held (the successor's DS is not at the parent yet) or rejected; the
forward command's status when it failed.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{ckaIDFlag()},
				Action: func(c *cli.Context) error { return runHook(c, ledger.Retract) },
			},
			{
				Name:      "pending",
				Usage:     "list what the hooks keep back: withheld submissions, held retractions",
				UsageText: "ods-keyguard hook pending [--json]",
				Description: `Exit status: 0 listed (even when empty); 3 the records could not be read.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runPending),
			},
			{
				Name:      "release",
				Usage:     "forward what may go now, drop what the enforcer no longer wants",
				UsageText: "ods-keyguard hook release [--json]",
				Description: `Exit status: 0 nothing left kept back; 1 some still kept back; 3 could not
determine (the records, the enforcer's database or a token unreadable).
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runRelease),
			},
			{
				Name:      "drop",
				Usage:     "settle a kept-back entry on purpose, recorded with who and why",
				UsageText: "ods-keyguard hook drop ID --reason TEXT [--operator NAME]",
				Description: `Exit status: 0 dropped; 3 no such entry.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why, for the record (required)"},
					&cli.StringFlag{Name: "operator", Usage: "who (default $SUDO_USER, else $USER)"},
					timeoutFlag(defaultTimeout),
				},
				Action: runDrop,
			},
			{
				Name:      "retract-gone",
				Usage:     "retract the DS a zone left at the parent when it was deleted from the enforcer",
				UsageText: "ods-keyguard hook retract-gone --zone Z [--by-hand --reason TEXT] [--operator NAME]",
				Description: `Exit status: 0 retracted or recorded; 1 the forward command failed (kept
back: hook release tries again); 2 bad usage; 3 the zone is still in the
enforcer, or the records have no DS of it at the parent.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "the deleted zone `Z` (required)"},
					&cli.BoolFlag{Name: "by-hand", Usage: "record that the DS was settled without ods-keyguard; send nothing"},
					&cli.StringFlag{Name: "reason", Usage: "why, for the record (required with --by-hand)"},
					&cli.StringFlag{Name: "operator", Usage: "who (default $SUDO_USER, else $USER)"},
					timeoutFlag(defaultTimeout),
				},
				Action: withJob(runRetractGone),
			},
			{
				Name:      "history",
				Usage:     "every DS request the hooks received and what became of it, oldest first",
				UsageText: "ods-keyguard hook history [--zone Z] [--json]",
				Description: `Exit status: 0 listed; 3 the records could not be read.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"}, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runHookHistory),
			},
			{
				Name:      "status",
				Usage:     "each zone's DS: the enforcer's view, what was forwarded and kept back, the parent",
				UsageText: "ods-keyguard hook status [--zone Z] [--json] [-t SECONDS]",
				Description: `Exit status: 0 nothing wrong; 1 something wrong (a WARNING or CRITICAL
finding); 3 could not determine (only UNKNOWN findings, or nothing read).
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"},
					jsonFlag(), timeoutFlag(30 * time.Second),
				},
				Action: withJob(runHookStatus),
			},
		},
	}
}

// ckaIDFlag accepts the enforcer's " --cka_id" suffix, should it ever be
// passed on: the cka_id comes on stdin either way.
func ckaIDFlag() cli.Flag {
	return &cli.BoolFlag{Name: "cka_id", Hidden: true, Usage: "ignored: the enforcer's cka_id comes on stdin"}
}

func runHook(c *cli.Context, kind string) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		log := hooks.NewSyslog("", c.App.ErrWriter)
		defer log.Close()
		return withheldAll(log, kind, err)
	}
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	ctx, cancel := context.WithTimeout(c.Context, cfg.HookTimeout)
	defer cancel()
	g, closeLedger, err := openGuard(ctx, c, cfg, log)
	if err != nil {
		return withheldAll(log, kind, err)
	}
	defer closeLedger()
	var o hooks.Outcome
	if kind == ledger.Submit {
		o = g.Submit(ctx, c.App.Reader)
	} else {
		o = g.Retract(ctx, c.App.Reader)
	}
	if code := o.ExitStatus(); code != exitOK {
		return exit(code, nil)
	}
	return nil
}

// withheldAll is a hook that could not begin: nothing it was given goes
// on, and the log says why.
func withheldAll(log hooks.Logger, kind string, err error) error {
	log.Err(fmt.Sprintf("%s: withheld everything: %v", kind, err))
	return exit(exitProblems, nil)
}

func runPending(r *job) error {
	c := r.c
	b, err := r.dsBook()
	if err != nil {
		return err
	}
	return output(c, hooks.PendingDoc(b), func(w io.Writer) error { return hooks.WritePending(w, b) })
}

func runRelease(r *job) error {
	c := r.c
	g, err := r.guard()
	if err != nil {
		return err
	}
	out := c.App.Writer
	if c.Bool("json") {
		out = nil // the document says it all
	}
	rep, err := g.Release(r.ctx, out)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, hooks.ReleaseDoc(rep)); err != nil {
			return err
		}
	}
	if rep.Left > 0 {
		return exit(exitProblems, nil)
	}
	return nil
}

func runDrop(c *cli.Context) error {
	ids, flags, err := interspersed(c, "reason", "operator")
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usagef("drop: want one ID (ods-keyguard hook pending lists them)")
	}
	if strings.TrimSpace(flags["reason"]) == "" {
		return usagef("drop: --reason TEXT is required: the record says why")
	}
	r, err := start(c)
	if err != nil {
		return err
	}
	defer r.end()
	g, err := r.guard()
	if err != nil {
		return err
	}
	e, err := g.Drop(r.ctx, ids[0], flags["reason"], ledger.Operator(flags["operator"]))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "dropped: %s zone %s key tag %d: %s\n", e.Kind, e.Zone, e.KeyTag, flags["reason"])
	return nil
}

// interspersed reads the arguments of a command whose string flags may
// also follow them, as its usage line puts them: the flags named, set
// before or after, and the rest.
func interspersed(c *cli.Context, names ...string) (args []string, flags map[string]string, err error) {
	return interspersedArgs(c, c.Args().Slice(), names...)
}

// interspersedArgs is interspersed on the arguments rest.
func interspersedArgs(c *cli.Context, rest []string, names ...string) (args []string, flags map[string]string, err error) {
	flags = map[string]string{}
	for _, n := range names {
		flags[n] = c.String(n)
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "-") || a == "-" { // "-": stdin, an argument
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := flags[name]; !ok {
			return nil, nil, usagef("%s: flag provided but not defined: %s", c.Command.Name, a)
		}
		if !hasValue {
			if i+1 == len(rest) {
				return nil, nil, usagef("%s: flag needs an argument: %s", c.Command.Name, a)
			}
			i++
			value = rest[i]
		}
		flags[name] = value
	}
	return args, flags, nil
}

func runRetractGone(r *job) error {
	c := r.c
	zone, reason := c.String("zone"), c.String("reason")
	if zone == "" {
		return usagef("retract-gone: --zone Z is required")
	}
	if c.Bool("by-hand") && strings.TrimSpace(reason) == "" {
		return usagef("retract-gone: --by-hand needs --reason TEXT: the record says what was done")
	}
	g, err := r.guard()
	if err != nil {
		return err
	}
	keys, err := g.RetractGone(r.ctx, zone, reason, ledger.Operator(c.String("operator")), c.Bool("by-hand"), c.App.Writer)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exit(exitProblems, err)
	}
	if err != nil {
		return err
	}
	done := "retraction forwarded"
	if c.Bool("by-hand") {
		done = "settled by hand, recorded"
	}
	for _, k := range keys {
		fmt.Fprintf(c.App.Writer, "zone %s key tag %d: %s\n", k.Zone, k.KeyTag, done)
	}
	return nil
}

func runHookHistory(r *job) error {
	c := r.c
	b, err := r.dsBook()
	if err != nil {
		return err
	}
	evs := hooks.History(b, c.String("zone"))
	return output(c, hooks.HistoryDoc(evs), func(w io.Writer) error { return hooks.WriteHistory(w, evs) })
}

func runHookStatus(r *job) error {
	c := r.c
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	tokens, err := r.cfg.Tokens()
	if err != nil {
		return err
	}
	zones, err := hooks.ReadStatus(r.ctx, hooks.StatusSources{Source: source(r.cfg), Ledger: l,
		RequireBackup: r.cfg.RequireBackup(), Parent: r.cfg.ParentConfig(), Tokens: tokens}, c.String("zone"))
	if err != nil {
		return err
	}
	if err := output(c, hooks.StatusDoc(zones), func(w io.Writer) error { return hooks.WriteStatus(w, zones) }); err != nil {
		return err
	}
	switch hooks.Worst(zones) {
	case hooks.Critical, hooks.Warning:
		return exit(exitProblems, nil)
	case hooks.Unknown:
		return exit(exitUnknown, nil)
	}
	return nil
}
