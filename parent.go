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
				Description: `Exit status: 0 done (told what was due; the rest waits on the parent);
1 an ods-enforcer command failed, or could not be recorded first; 2 bad
usage; 3 could not determine (a parent server, the enforcer's database or
the records could not be read): nothing told about what was not known.
The manual: man ods-keyguard.`,
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
