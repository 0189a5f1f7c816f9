package main

import (
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/pool"
)

func poolCommand() *cli.Command {
	return &cli.Command{
		Name:  "pool",
		Usage: "the enforcer's pools of unused keys",
		Subcommands: []*cli.Command{{
			Name:      "fill",
			Usage:     "ask the enforcer for the keys that rule 2 will need up to the backup after next",
			UsageText: "ods-keyguard pool fill [--until TIME] [--policy P] [--json]",
			Description: `Exit status: 0 asked (or nothing to do); 2 bad usage; 3 could not act.
The manual: man ods-keyguard.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "until", Usage: "cover the keys needed until `TIME`, now or later (RFC 3339, YYYY-MM-DD, or a duration such as P30D)"},
				&cli.StringFlag{Name: "policy", Usage: "only policy `P`"},
				jsonFlag(), timeoutFlag(defaultTimeout),
			},
			Action: withJob(runPoolFill),
		}},
	}
}

func runPoolFill(r *job) error {
	c := r.c
	sched, err := r.cfg.Schedule()
	if err != nil {
		return err
	}
	in := pool.Input{Now: time.Now().UTC(), Interval: sched.Interval, Grace: sched.Grace, NewZones: r.cfg.Check.NewZones, Policy: c.String("policy")}
	if s := c.String("until"); s != "" {
		if in.Until, err = human.ParseLater(s, in.Now); err != nil {
			return usagef("--until: %v", err)
		}
	}
	if in.State, err = enforcer.ReadDatastore(r.ctx, r.cfg.ODS.Datastore); err != nil {
		return err
	}
	if _, in.Store, err = r.ceremonies(true); err != nil {
		return err
	}
	plans, err := pool.Fill(in)
	if err != nil {
		return err
	}
	ods := enforcer.CLI{Program: r.cfg.EnforcerCLI, Socket: r.cfg.ODS.SocketFile}
	generate := func(policy, duration string) error {
		_, err := ods.Run(r.ctx, "key", "generate", "--policy", policy, "--duration", duration)
		return err
	}
	var out io.Writer
	if !c.Bool("json") {
		out = c.App.Writer
	}
	asked, err := pool.Ask(plans, generate, out)
	if err != nil || !c.Bool("json") {
		return err
	}
	return writeJSON(c.App.Writer, pool.Doc(asked))
}
