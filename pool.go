package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

func poolCommand() *cli.Command {
	return &cli.Command{
		Name:  "pool",
		Usage: "the enforcer's pools of unused keys",
		Subcommands: []*cli.Command{{
			Name:      "fill",
			Usage:     "ask the enforcer for the keys that rule 2 will need up to the backup after next",
			UsageText: "ods-keyguard pool fill [--until TIME] [--policy P]",
			Description: `For each policy (or --policy P), counts the keys its zones take until the
backup after next is due plus grace (or until --until TIME), and runs
ods-enforcer key generate --policy P --duration D with D long enough for
that many keys of each of its roles. New keys are not backed up: they need
the next ceremony. With <ManualKeyGeneration/> this is how keys appear.

Exit status: 0 asked (or nothing to do); 2 bad usage; 3 could not act.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "until", Usage: "cover the keys needed until `TIME` (RFC 3339, YYYY-MM-DD, or a duration such as P30D)"},
				&cli.StringFlag{Name: "policy", Usage: "only policy `P`"},
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
	now := time.Now().UTC()
	var until time.Time
	if s := c.String("until"); s != "" {
		if until, err = parseAt(s, now); err != nil {
			return usagef("--until: %v", err)
		}
	}
	st, err := readState(c.Context, cfg)
	if err != nil {
		return err
	}
	store, err := ledger.Load(cfg.StateDir)
	if err != nil {
		return err
	}
	only := c.String("policy")
	found := only == ""
	cli := enforcer.CLI{Program: cfg.EnforcerCLI, Socket: cfg.ODS.SocketFile}
	for _, p := range st.Policies {
		if only != "" && p.Name != only {
			continue
		}
		found = true
		var zones []*enforcer.Zone
		for _, z := range st.Zones {
			if z.Policy == p {
				zones = append(zones, z)
			}
		}
		var duration time.Duration
		var notes []string
		for _, pk := range p.Keys {
			if pk.ManualRollover || pk.Lifetime <= 0 {
				continue
			}
			t := until
			if t.IsZero() {
				// The keys made now are backed up at the next ceremony and
				// must last until the one after it.
				due := now
				if last := store.LastConfirmed(pk.Repository); last != nil && last.Ended.Add(sched.Interval).After(now) {
					due = last.Ended.Add(sched.Interval)
				}
				t = due.Add(sched.Interval + sched.Grace)
			}
			need := rules.Needed(rules.Rolls(p, pk, zones, cfg.Check.NewZones[p.Name], now), pk.Lifetime, t)
			unused := len(rules.PoolKeys(st, p, pk))
			notes = append(notes, fmt.Sprintf("%s: %d needed until %s, %d unused", pk.Role, need, t.Format("2006-01-02T15:04Z"), unused))
			if need > unused {
				duration = max(duration, time.Duration(need)*pk.Lifetime)
			}
		}
		if duration == 0 {
			fmt.Fprintf(c.App.Writer, "policy %s: nothing to do (%s)\n", p.Name, joinNotes(notes))
			continue
		}
		d := fmt.Sprintf("PT%dS", int64(math.Ceil(duration.Seconds())))
		if _, err := cli.Run(c.Context, "key", "generate", "--policy", p.Name, "--duration", d); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "policy %s: asked the enforcer for keys covering %s (%s)\n", p.Name, d, joinNotes(notes))
		fmt.Fprintf(c.App.Writer, "policy %s: the new keys are not backed up: run the next ceremony (ods-keyguard backup prepare)\n", p.Name)
	}
	if !found {
		return fmt.Errorf("policy %q: not in the enforcer's database", only)
	}
	return nil
}

func joinNotes(notes []string) string { return strings.Join(notes, "; ") }
