package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
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
				UsageText: "ods-keyguard recover verify [--restored] [--operator NAME] [--json] [-t SECONDS]",
				Description: `Exit status: 0 complete (every key in use and every backed-up key back);
1 incomplete; 3 could not determine (a backup token could not be read).
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout),
					&cli.BoolFlag{Name: "restored", Usage: "the HSMs were restored from the backup: record a restore, not a check"},
					&cli.StringFlag{Name: "operator", Usage: "who restored or checked them (default $SUDO_USER, else $USER)"}},
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
	snap, backups, err := r.recoverySnapshot(req)
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
		Backups: backups, ReadZone: recovery.ReadSignedOutput, Book: book,
		Parent: parent.ByZone(r.ctx, r.cfg.ParentConfig(), snap.State.ZoneNames())}, nil
}

// enforcerStopped refuses when an ods-enforcerd uses the database, and
// when that cannot be told.
func (r *job) enforcerStopped() error {
	t := recovery.Target{Conf: r.cfg.ODS.Path, Socket: r.cfg.ODS.SocketFile, PidFile: r.cfg.ODS.PidFile, Datastore: r.cfg.ODS.Datastore,
		ReadConf: func(path string) (enforcer.Datastore, error) {
			o, err := config.LoadOpenDNSSEC(path)
			if err != nil {
				return enforcer.Datastore{}, err
			}
			return o.Datastore, nil
		}}
	running, err := t.Running()
	if err != nil {
		return exit(exitUnknown, fmt.Errorf("recover prune-pool --apply: %w; nothing changed", err))
	}
	if running != "" {
		return exit(exitProblems, fmt.Errorf("recover prune-pool --apply: ods-enforcerd is running (%s): stop it first; nothing changed", running))
	}
	return nil
}

func runPrunePool(r *job) error {
	c := r.c
	if c.Bool("apply") {
		if err := r.enforcerStopped(); err != nil {
			return err
		}
	}
	snap, err := r.snapshot(hsmcheck.Request{NoPublic: true})
	if err != nil {
		return err
	}
	l, store, err := r.ceremonies(false)
	if err != nil {
		return err
	}
	p, err := recovery.PlanPrune(snap.State, store, recovery.Tokens(snap.Results), r.cfg.ODS.Datastore)
	if err != nil {
		return err
	}
	if c.Bool("apply") {
		// Again, just before: the tokens took a while.
		if err := r.enforcerStopped(); err != nil {
			return err
		}
		state, err := statedir.Open(r.cfg.StateDir, true, r.cfg.StateGroup)
		if err != nil {
			return err
		}
		defer state.Close()
		if err := p.ApplyRecorded(r.ctx, r.cfg.ODS.Datastore, state, time.Now(), l); err != nil {
			if p.Unknown != "" {
				output(c, p.Doc(), p.WriteText)
			}
			return fmt.Errorf("recover prune-pool --apply: %w", err)
		}
	}
	if err := output(c, p.Doc(), p.WriteText); err != nil {
		return err
	}
	if len(p.Blocked) > 0 || len(p.Kept) > 0 || (len(p.Keys) > 0 && !p.Applied) {
		return exit(exitProblems, nil)
	}
	return nil
}

// recoverySnapshot reads the database, every repository's and mirror's
// token, and every configured backup token, in one pass: the backup
// tokens' results come apart (a backup token whose PIN file cannot be read
// is one that could not be read).
func (r *job) recoverySnapshot(req hsmcheck.Request) (*inventory.Snapshot, []recovery.Token, error) {
	tokens, err := r.cfg.Tokens()
	if err != nil {
		return nil, nil, err
	}
	var failed []hsmcheck.Result
	for _, name := range slices.Sorted(maps.Keys(r.cfg.BackupTokens)) {
		t, err := r.cfg.BackupToken(name)
		if err != nil {
			failed = append(failed, hsmcheck.Result{Token: hsmcheck.Token{Name: name, Kind: hsmcheck.KindBackupToken}, Err: err})
			continue
		}
		tokens = append(tokens, t)
	}
	snap, err := inventory.Take(r.ctx, source(r.cfg), tokens, req)
	if err != nil {
		return nil, nil, err
	}
	var hsms []hsmcheck.Result
	backups := failed
	for _, res := range snap.Results {
		if res.Token.Kind == hsmcheck.KindBackupToken {
			backups = append(backups, res)
		} else {
			hsms = append(hsms, res)
		}
	}
	snap.Results = hsms
	return snap, recovery.Tokens(backups), nil
}

func runVerifyRestore(r *job) error {
	c := r.c
	snap, backups, err := r.recoverySnapshot(hsmcheck.Request{})
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
	v := recovery.Verify(snap.State, store, recovery.Tokens(snap.Results), backups...)
	if v.Complete {
		if err := recovery.RecordVerification(r.ctx, l, snap.Results, v, ledger.Operator(c.String("operator")), c.Bool("restored")); err != nil {
			return err
		}
	}
	if err := output(c, v.Doc(), v.WriteText); err != nil {
		return err
	}
	switch {
	case v.Unknown != "":
		return exit(exitUnknown, nil)
	case !v.Complete:
		return exit(exitProblems, nil)
	}
	return nil
}
