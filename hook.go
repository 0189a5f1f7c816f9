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

	"github.com/ods-keyguard/ods-keyguard/ceremony"
	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

func hookCommand() *cli.Command {
	return &cli.Command{
		Name:  "hook",
		Usage: "the enforcer's DS hooks: forward only keys whose backup is verified, never break the chain",
		Description: `Installed as ods-keyguard-ds-submit and ods-keyguard-ds-retract (links to
this binary) and named in conf.xml:

   <DelegationSignerSubmitCommand>/usr/sbin/ods-keyguard-ds-submit</DelegationSignerSubmitCommand>
   <DelegationSignerRetractCommand>/usr/sbin/ods-keyguard-ds-retract</DelegationSignerRetractCommand>

The enforcer passes no arguments: the configuration comes from
$ODS_KEYGUARD_CONFIG or /etc/opendnssec/keyguard.toml. A DNSKEY is forwarded
to [hooks] ds_submit_forward only when its key is in a confirmed backup
ceremony, is on its repository's token and every mirror now, and (with
RequireBackup) is Done in the enforcer (or Not Required there, which the
enforcer never changes). Anything else is withheld: recorded in state_dir,
logged to syslog (conf.xml's facility, tag ods-keyguard) and stderr.
A retraction is held while the zone's successor KSK is not known to be at
the parent, and forwarded right after it; a retraction of a DS that never
went to the parent is not forwarded. The enforcer ignores a hook's exit
status and never retries: "hook release" sends what may go later.`,
		Subcommands: []*cli.Command{
			{
				Name:      "ds-submit",
				Usage:     "read DNSKEYs on stdin, forward those whose backup is verified",
				UsageText: "ods-keyguard hook ds-submit < DNSKEY-lines",
				Description: `Exit status: 0 forwarded (or approved, with no forward command
configured); 1 withheld or rejected; the forward command's status when it
failed. A run never takes longer than [hooks] timeout (default 20s).`,
				Flags:  []cli.Flag{ckaIDFlag()},
				Action: func(c *cli.Context) error { return runHook(c, ledger.Submit) },
			},
			{
				Name:      "ds-retract",
				Usage:     "read DNSKEYs on stdin, forward the retractions that leave the chain intact",
				UsageText: "ods-keyguard hook ds-retract < DNSKEY-lines",
				Description: `Exit status: 0 forwarded (or not needed: the DS never went to the parent);
1 held (the successor's DS is not at the parent yet) or rejected; the
forward command's status when it failed.`,
				Flags:  []cli.Flag{ckaIDFlag()},
				Action: func(c *cli.Context) error { return runHook(c, ledger.Retract) },
			},
			{
				Name:      "pending",
				Usage:     "list what the hooks keep back: withheld submissions, held retractions",
				UsageText: "ods-keyguard hook pending [--json]",
				Description: `Text: one line per entry: ID KIND ZONE KEYTAG SINCE REASON, then the input
that was rejected (not a DNSKEY), which blocks nothing.
Exit status: 0 listed (even when empty).`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: runPending,
			},
			{
				Name:      "release",
				Usage:     "forward what may go now, drop what the enforcer no longer wants",
				UsageText: "ods-keyguard hook release [--json]",
				Description: `Decides every withheld submission and held retraction again: submissions
whose keys are now covered are forwarded, then the retractions whose
successors' DS are at the parent. What the enforcer has since retracted,
purged or marked gone is dropped with the reason, never sent. A submission
the enforcer made with no record at all (the hook could not write) is
rebuilt from the key on the token and decided the same way. backup done
runs it.
Exit status: 0 nothing left kept back; 1 some still kept back.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: runRelease,
			},
			{
				Name:      "drop",
				Usage:     "settle a kept-back entry on purpose, recorded with who and why",
				UsageText: "ods-keyguard hook drop ID --reason TEXT [--operator NAME]",
				Description: `ID is what "hook pending" lists. The entry is not forwarded; the drop is
recorded with the operator and the reason.
Exit status: 0 dropped; 3 no such entry.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why, for the record (required)"},
					&cli.StringFlag{Name: "operator", Usage: "who (default $SUDO_USER, else $USER)"},
					timeoutFlag(defaultTimeout),
				},
				Action: runDrop,
			},
			{
				Name:      "history",
				Usage:     "every DS request the hooks received and what became of it, oldest first",
				UsageText: "ods-keyguard hook history [--zone Z] [--json]",
				Description: `One line per event: TIME KIND ACTION ZONE KEYTAG BY REASON. Actions:
forwarding, forwarded, withheld, held, failed, dropped (no longer wanted, or
on purpose), skipped (a retraction of a DS that never went to the parent),
rejected (input that is no DNSKEY), adopted (at the parent before the
records began).
Exit status: 0 listed.`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"}, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: runHookHistory,
			},
			{
				Name:      "status",
				Usage:     "each zone's DS: the enforcer's view, what was forwarded and kept back, the parent",
				UsageText: "ods-keyguard hook status [--zone Z] [--json] [-t SECONDS]",
				Description: `Per zone, each KSK and CSK: the enforcer's DS state, when its submission and
retraction were forwarded, what is kept back and why, whether the parent
should hold its DS now and, with [parent] configured, whether it does.
Exit status: 0 nothing wrong; 1 something wrong (see the findings); 3 could
not determine.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"},
					jsonFlag(), timeoutFlag(30 * time.Second),
				},
				Action: runHookStatus,
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
		log.Err(fmt.Sprintf("%s: withheld everything: %v", kind, err))
		return exit(exitProblems, nil)
	}
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	ctx, cancel := context.WithTimeout(c.Context, cfg.HookTimeout)
	defer cancel()
	l, err := openLedger(ctx, c, cfg, false)
	if err != nil {
		log.Err(fmt.Sprintf("%s: withheld everything: %v", kind, err))
		return exit(exitProblems, nil)
	}
	defer l.Close()
	g, err := newGuard(c, cfg, l, log)
	if err != nil {
		log.Err(fmt.Sprintf("%s: withheld everything: %v", kind, err))
		return exit(exitProblems, nil)
	}
	var o hooks.Outcome
	if kind == ledger.Submit {
		o = g.Submit(ctx, c.App.Reader)
	} else {
		o = g.Retract(ctx, c.App.Reader)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(o.ForwardErr, &ee) && ee.ExitCode() > 0:
		return exit(ee.ExitCode(), nil)
	case o.Nothing || o.Withheld+o.Held+o.Rejected > 0 || o.ForwardErr != nil || o.RecordErr != nil:
		return exit(exitProblems, nil)
	}
	return nil
}

func runPending(c *cli.Context) error {
	r, err := begin(c)
	if err != nil {
		return err
	}
	defer r.end()
	ctx := r.ctx
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	b, err := l.DS(ctx)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, hooks.PendingDoc(b))
	}
	return hooks.WritePending(c.App.Writer, b)
}

func runRelease(c *cli.Context) error {
	r, err := begin(c)
	if err != nil {
		return err
	}
	defer r.end()
	cfg, ctx := r.cfg, r.ctx
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	rep, err := release(ctx, c, cfg, log, !c.Bool("json"))
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

// release runs the guard's release; text says whether to print its lines.
func release(ctx context.Context, c *cli.Context, cfg *config.Config, log hooks.Logger, text bool) (*hooks.ReleaseReport, error) {
	l, err := openLedger(ctx, c, cfg, false)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	g, err := newGuard(c, cfg, l, log)
	if err != nil {
		return nil, err
	}
	var out io.Writer
	if text {
		out = c.App.Writer
	}
	return g.Release(ctx, out)
}

func runDrop(c *cli.Context) error {
	// Flags may follow the ID, as the usage line puts them.
	reason, operator := c.String("reason"), c.String("operator")
	var ids []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-"):
			ids = append(ids, a)
			continue
		case name != "reason" && name != "operator":
			return usagef("drop: flag provided but not defined: %s", a)
		case !hasValue && i+1 < len(args):
			i++
			value = args[i]
		case !hasValue:
			return usagef("drop: flag needs an argument: %s", a)
		}
		if name == "reason" {
			reason = value
		} else {
			operator = value
		}
	}
	if len(ids) != 1 {
		return usagef("drop: want one ID (ods-keyguard hook pending lists them)")
	}
	if strings.TrimSpace(reason) == "" {
		return usagef("drop: --reason TEXT is required: the record says why")
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel, err := deadline(c)
	if err != nil {
		return err
	}
	defer cancel()
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	l, err := openLedger(ctx, c, cfg, false)
	if err != nil {
		return err
	}
	defer l.Close()
	g, err := newGuard(c, cfg, l, log)
	if err != nil {
		return err
	}
	e, err := g.Drop(ctx, ids[0], reason, ceremony.Operator(operator))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "dropped: %s zone %s key tag %d: %s\n", e.Kind, e.Zone, e.KeyTag, reason)
	return nil
}

func runHookHistory(c *cli.Context) error {
	r, err := begin(c)
	if err != nil {
		return err
	}
	defer r.end()
	ctx := r.ctx
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	b, err := l.DS(ctx)
	if err != nil {
		return err
	}
	evs := hooks.History(b, c.String("zone"))
	if c.Bool("json") {
		return writeJSON(c.App.Writer, hooks.HistoryDoc(evs))
	}
	return hooks.WriteHistory(c.App.Writer, evs)
}

func runHookStatus(c *cli.Context) error {
	r, err := begin(c)
	if err != nil {
		return err
	}
	defer r.end()
	cfg, ctx := r.cfg, r.ctx
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	zones, err := hooks.ReadStatus(ctx, hooks.StatusSources{Datastore: cfg.ODS.Datastore, Ledger: l,
		RequireBackup: cfg.RequireBackup(), Parent: cfg.ParentConfig()}, c.String("zone"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		err = writeJSON(c.App.Writer, hooks.StatusDoc(zones))
	} else {
		hooks.WriteStatus(c.App.Writer, zones)
	}
	if err != nil {
		return err
	}
	for _, z := range zones {
		if len(z.Findings) > 0 {
			return exit(exitProblems, nil)
		}
	}
	return nil
}
