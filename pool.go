package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

func poolCommand() *cli.Command {
	return &cli.Command{
		Name:  "pool",
		Usage: "the enforcer's pools of unused keys",
		Subcommands: []*cli.Command{{
			Name:      "fill",
			Usage:     "ask the enforcer for the keys that rule 2 will need up to the backup after next",
			UsageText: "ods-keyguard pool fill [--until TIME] [--policy P] [--json]",
			Description: `For each policy (or --policy P), counts the keys its zones take until the
backup after next is due plus grace (or until --until TIME), and runs
ods-enforcer key generate --policy P --duration D with D long enough for
that many keys of each of its roles. New keys are not backed up: they need
the next ceremony. With <ManualKeyGeneration/> this is how keys appear.
New zones of a <ShareKeys/> policy take no keys when it has a zone already.

Exit status: 0 asked (or nothing to do); 2 bad usage; 3 could not act.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "until", Usage: "cover the keys needed until `TIME` (RFC 3339, YYYY-MM-DD, or a duration such as P30D)"},
				&cli.StringFlag{Name: "policy", Usage: "only policy `P`"},
				jsonFlag(), timeoutFlag(defaultTimeout),
			},
			Action: runPoolFill,
		}},
	}
}

func runPoolFill(c *cli.Context) error {
	cfg, err := commandConfig(c)
	if err != nil {
		return err
	}
	sched, err := cfg.Schedule()
	if err != nil {
		return err
	}
	in := rules.FillInput{Now: time.Now().UTC(), Interval: sched.Interval, Grace: sched.Grace, NewZones: cfg.Check.NewZones, Policy: c.String("policy")}
	if s := c.String("until"); s != "" {
		if in.Until, err = parseAt(s, in.Now); err != nil {
			return usagef("--until: %v", err)
		}
	}
	ctx, cancel, err := deadline(c)
	if err != nil {
		return err
	}
	defer cancel()
	if in.State, err = enforcer.ReadDatastore(ctx, cfg.ODS.Datastore); err != nil {
		return err
	}
	l, err := openLedger(ctx, c, cfg, true)
	if err != nil {
		return err
	}
	defer l.Close()
	if in.Store, err = l.Ceremonies(ctx); err != nil {
		return err
	}
	plans, err := rules.Fill(in)
	if err != nil {
		return err
	}
	type asked struct {
		rules.FillPlan
		Asked bool `json:"asked"`
		// What key generate got, in seconds; null when nothing was asked.
		Duration *int64 `json:"duration_seconds"`
	}
	doc := struct {
		Schema   string  `json:"schema"`
		Policies []asked `json:"policies"`
	}{Schema: "ods-keyguard/pool-fill/1", Policies: []asked{}}
	cli := enforcer.CLI{Program: cfg.EnforcerCLI, Socket: cfg.ODS.SocketFile}
	for _, p := range plans {
		var notes []string
		for _, n := range p.Needs {
			notes = append(notes, n.String())
		}
		a := asked{FillPlan: p}
		if p.Duration == 0 {
			if !c.Bool("json") {
				fmt.Fprintf(c.App.Writer, "policy %s: nothing to do (%s)\n", p.Policy, strings.Join(notes, "; "))
			}
			doc.Policies = append(doc.Policies, a)
			continue
		}
		secs := int64(math.Ceil(p.Duration.Seconds()))
		duration := fmt.Sprintf("PT%dS", secs)
		if _, err := cli.Run(ctx, "key", "generate", "--policy", p.Policy, "--duration", duration); err != nil {
			return err
		}
		a.Asked, a.Duration = true, &secs
		doc.Policies = append(doc.Policies, a)
		if !c.Bool("json") {
			fmt.Fprintf(c.App.Writer, "policy %s: asked the enforcer for keys covering %s (%s)\n", p.Policy, duration, strings.Join(notes, "; "))
			fmt.Fprintf(c.App.Writer, "policy %s: the new keys are not backed up: run the next ceremony (ods-keyguard backup prepare)\n", p.Policy)
		}
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, doc)
	}
	return nil
}
