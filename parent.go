package main

import (
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/parentsync"
)

func parentCommand() *cli.Command {
	return &cli.Command{
		Name:  "parent",
		Usage: "the parent zone as its servers serve it: tell the enforcer ds-seen and ds-gone",
		Subcommands: []*cli.Command{
			{
				Name:      "sync",
				Usage:     "tell the enforcer ds-seen and ds-gone from what every parent server serves",
				UsageText: "ods-keyguard parent sync [--zone Z] [--dry-run] [--json] [-t SECONDS]",
				Description: `For each zone's KSKs and CSKs whose DS the enforcer has submitted or
retracted, reads the DS RRset from every [parent] nameservers server, each
asked directly, and matches it to the key by key tag, algorithm and digest.
Then, and only then:
   ods-enforcer key ds-seen  for a submitted DS that every server serves;
   ods-enforcer key ds-gone  for a retracted DS that no server serves any
                             more, once the policy's DS TTL has passed since
                             parent sync first found it gone (recorded).
Never ds-gone while ods-keyguard holds that retraction for a successor whose
DS is not at the parent: that DS is the zone's chain of trust. A server that
does not answer, or a DS that cannot be matched to the key, tells the
enforcer nothing. Each action is recorded in the DS history (hook history)
with what each server served, before the enforcer is told. --dry-run reads
and says what it would do; it records and tells nothing.
Meant for a timer (ods-keyguard-parent-sync.timer) or cron.
Exit status: 0 done (told what was due; the rest waits on the parent);
1 an ods-enforcer command failed, or could not be recorded first; 2 bad
usage; 3 could not determine (a parent server, the enforcer's database or
the records could not be read): nothing told about what was not known.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"},
					&cli.BoolFlag{Name: "dry-run", Usage: "say what would be told; record and tell nothing"},
					jsonFlag(), timeoutFlag(60 * time.Second),
				},
				Action: withJob(runParentSync),
			},
		},
	}
}

func runParentSync(r *job) error {
	c := r.c
	dry := c.Bool("dry-run")
	l, err := r.ledger(dry)
	if err != nil {
		return err
	}
	tokens, err := r.cfg.Tokens()
	if err != nil {
		return err
	}
	log := hooks.NewSyslog(r.cfg.ODS.SyslogFacility, c.App.ErrWriter)
	r.closes = append(r.closes, func() error { log.Close(); return nil })
	var lg parentsync.Logger = log
	if !c.Bool("json") {
		lg = log.SyslogOnly() // the text report says it once
	}
	rep, err := parentsync.Run(r.ctx, parentsync.Sources{
		Source: source(r.cfg), Ledger: l, Parent: r.cfg.ParentConfig(), Tokens: tokens,
		Enforcer: enforcer.CLI{Program: r.cfg.EnforcerCLI, Socket: r.cfg.ODS.SocketFile},
		Log:      lg, Zone: c.String("zone"), DryRun: dry,
	})
	if err != nil {
		return err
	}
	if err := output(c, parentsync.Doc(rep), func(w io.Writer) error { return parentsync.WriteText(w, rep) }); err != nil {
		return err
	}
	switch {
	case rep.Failed():
		return exit(exitProblems, nil)
	case rep.Unknown():
		return exit(exitUnknown, nil)
	}
	return nil
}
