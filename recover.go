package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/recovery"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:        "recover",
		Usage:       "recovery when HSMs lost their keys: assess, verify the restore, prune the pool, plan for keys lost for good",
		Description: `The manual: man ods-keyguard.`,
		Subcommands: []*cli.Command{
			{
				Name:      "assess",
				Usage:     "which HSMs lost which keys, what the backup brings back, which zones must go insecure",
				UsageText: "ods-keyguard recover assess [--delivery DURATION] [--json] [-t SECONDS]",
				Description: `Exit status: 0 nothing lost; 1 keys lost, every key in use recoverable
(unused keys made after the last ceremony may be lost); 2 a key in use
lost for good (see recover plan) or a zone must go insecure; 3 could not
determine, also when an HSM could not be read (it is counted as holding
nothing, and the verdict says "cannot tell for certain"); 2 also for bad
usage (with a message on stderr).
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "delivery", Usage: "how long until the new HSMs are in service (`DURATION`, e.g. P3D)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: withJob(runAssess),
			},
			{
				Name:      "verify",
				Usage:     "after restoring from the backup token: is every backed-up key back?",
				UsageText: "ods-keyguard recover verify [--json] [-t SECONDS]",
				Description: `Exit status: 0 complete (every key in use and every backed-up key back);
1 incomplete; 3 could not determine.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runVerifyRestore),
			},
			{
				Name:      "plan",
				Usage:     "for keys in use lost for good: keep the zone signed (draft-ietf-dnsop-dnssec-keyrestore-01), or the date to remove the DS",
				UsageText: "ods-keyguard recover plan [--zone ZONE] [--margin DURATION] [--json] [-t SECONDS]",
				Description: `Exit status: 0 no key in use lost for good; 1 every zone concerned can
stay signed (follow the steps); 2 a zone must go insecure (request DS
removal by the date given), or bad usage; 3 could not determine (a policy
not in kasp.xml, or an HSM that could not be read: the plan is then the
worst case, counting it as holding nothing).
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "only `ZONE`"},
					&cli.StringFlag{Name: "margin", Value: "P1D", Usage: "how long the old signatures must outlast Tdea (`DURATION`)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: withJob(runPlan),
			},
			{
				Name:      "prune-pool",
				Usage:     "after a restore: remove from the enforcer's database the keys no zone used that no HSM holds",
				UsageText: "ods-keyguard recover prune-pool [--apply] [--json] [-t SECONDS]",
				Description: `Exit status: 0 nothing to remove, or removed with --apply; 1 keys to remove
(listed, not removed), or the restore is not complete, or --apply refused
while the enforcer runs; 3 could not determine (a token or the database did
not answer); 2 bad usage.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "apply", Usage: "run the statements (the enforcer stopped)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: withJob(runPrunePool),
			},
		},
	}
}

func runAssess(r *job) error {
	c := r.c
	var delivery time.Duration
	if s := c.String("delivery"); s != "" {
		var err error
		if delivery, err = human.ParseISODuration(s); err != nil {
			return usagef("--delivery: %v", err)
		}
	}
	in, err := r.recoveryInput(hsmcheck.Request{})
	if err != nil {
		return err
	}
	in.Delivery = delivery
	a := recovery.Assess(in)
	a.Delivery = c.String("delivery")
	if err := output(c, a.Doc(), a.WriteText); err != nil {
		return err
	}
	if a.Exit != 0 {
		return exit(a.Exit, nil)
	}
	return nil
}

func runPlan(r *job) error {
	c := r.c
	margin, err := human.ParseISODuration(c.String("margin"))
	if err != nil {
		return usagef("--margin: %v", err)
	}
	file, err := recovery.PolicyFile(r.cfg.ODS.Path)
	if err != nil {
		return err
	}
	kasp, err := recovery.ReadKasp(file)
	if err != nil {
		return err
	}
	in, err := r.recoveryInput(hsmcheck.Request{NoPublic: true})
	if err != nil {
		return err
	}
	if z := c.String("zone"); z != "" {
		found := false
		for _, n := range in.State.ZoneNames() {
			found = found || strings.EqualFold(n, strings.TrimSuffix(z, "."))
		}
		if !found {
			return usagef("--zone %s: not a zone of the enforcer", z)
		}
	}
	kp := recovery.Plan(recovery.PlanInput{Input: in, Kasp: kasp, Margin: margin, Zone: c.String("zone")})
	if err := output(c, kp.Doc(), kp.WriteText); err != nil {
		return err
	}
	if kp.Exit != 0 {
		return exit(kp.Exit, nil)
	}
	return nil
}

// recoveryInput reads what recover assess and plan judge: the database and
// every token (with req), the ceremonies, the DS records and, where
// [parent] is configured, the parent's DS.
func (r *job) recoveryInput(req hsmcheck.Request) (recovery.Input, error) {
	snap, err := r.snapshot(req)
	if err != nil {
		return recovery.Input{}, err
	}
	l, store, err := r.ceremonies(true)
	if err != nil {
		return recovery.Input{}, err
	}
	book, err := l.DS(r.ctx)
	if err != nil {
		return recovery.Input{}, err
	}
	return recovery.Input{Now: time.Now().UTC(), State: snap.State, Store: store, Tokens: recovery.Tokens(snap.Results),
		ReadZone: recovery.ReadSignedOutput, Book: book,
		Parent: parent.ByZone(r.ctx, r.cfg.ParentConfig(), snap.State.ZoneNames())}, nil
}

func runPrunePool(r *job) error {
	c := r.c
	running := recovery.EnforcerRunning(r.cfg.ODS.SocketFile, r.cfg.ODS.Path)
	if c.Bool("apply") && running != "" {
		return exit(exitProblems, fmt.Errorf("recover prune-pool --apply: ods-enforcerd is running (%s): stop it first; nothing changed", running))
	}
	snap, err := r.snapshot(hsmcheck.Request{NoPublic: true})
	if err != nil {
		return err
	}
	_, store, err := r.ceremonies(false)
	if err != nil {
		return err
	}
	p, err := recovery.PlanPrune(snap.State, store, recovery.Tokens(snap.Results), r.cfg.ODS.Datastore)
	if err != nil {
		return err
	}
	if c.Bool("apply") {
		state, err := statedir.Open(r.cfg.StateDir, true, r.cfg.StateGroup)
		if err != nil {
			return err
		}
		defer state.Close()
		if err := p.Apply(r.ctx, r.cfg.ODS.Datastore, state, time.Now()); err != nil {
			return fmt.Errorf("recover prune-pool --apply: %w", err)
		}
	}
	if err := output(c, p.Doc(), p.WriteText); err != nil {
		return err
	}
	if len(p.Blocked) > 0 || (len(p.Keys) > 0 && !p.Applied) {
		return exit(exitProblems, nil)
	}
	return nil
}

func runVerifyRestore(r *job) error {
	c := r.c
	snap, err := r.snapshot(hsmcheck.Request{})
	if err != nil {
		return err
	}
	for _, res := range snap.Results {
		if res.Err != nil {
			return res.Err
		}
	}
	l, store, err := r.ceremonies(false)
	if err != nil {
		return err
	}
	v := recovery.Verify(snap.State, store, recovery.Tokens(snap.Results))
	if v.Complete {
		if err := recovery.RecordRestore(r.ctx, l, snap.Results, v); err != nil {
			return err
		}
	}
	if err := output(c, v.Doc(), v.WriteText); err != nil {
		return err
	}
	if !v.Complete {
		return exit(exitProblems, nil)
	}
	return nil
}
