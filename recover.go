package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/recovery"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "recovery when HSMs lost their keys: assess, then verify the restore",
		Description: `Works with the enforcer daemon down: it reads the database and the tokens
directly.`,
		Subcommands: []*cli.Command{
			{
				Name:      "assess",
				Usage:     "which HSMs lost which keys, what the backup brings back, which zones must go insecure",
				UsageText: "ods-keyguard recover assess [--delivery DURATION] [--json] [-t SECONDS]",
				Description: `First line, the verdict: nothing lost; some HSMs lost keys another still
holds (replace them from their peers, do not restore from a backup token);
or every HSM lost keys (restore from the backup token), with the keys the
last confirmed ceremony has and those lost for good.
Then each HSM, each lost key, and each zone: the earliest RRSIG expiration
in its signed output, the time left, whether the parent has a DS (read from
the parent with [parent] configured, else from what ods-keyguard forwarded),
and the latest moment to request DS removal so the parent's DS is gone
before the signatures expire (DS TTL, propagation and registration delay of
the policy). With --delivery (ISO 8601, e.g. P3D) each zone "can wait for
the new HSMs" or must "go insecure". A signed file that cannot be read
counts as the worst case.

Exit status: 0 nothing lost; 1 keys lost but recoverable; 2 keys lost for
good or a zone must go insecure; 3 could not determine.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "delivery", Usage: "how long until the new HSMs are in service (`DURATION`, e.g. P3D)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: runAssess,
			},
			{
				Name:      "verify",
				Usage:     "after restoring from the backup token: is every backed-up key back?",
				UsageText: "ods-keyguard recover verify [--json] [-t SECONDS]",
				Description: `Every key of the last confirmed ceremony (and every needed key an earlier
ceremony covers) must be on every token with the public key the ceremony
recorded. Keys the enforcer used after the last ceremony are listed as lost,
with their zones. Each token's serial is compared with those the ceremonies
recorded. A complete restore is added to the history.

Exit status: 0 complete; 1 incomplete; 3 could not determine.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: runVerifyRestore,
			},
		},
	}
}

// readSigned reads a zone's signed output when its adapter is a file.
func readSigned(z *enforcer.Zone) (recovery.Signatures, error) {
	if !strings.EqualFold(z.OutputType, "File") || z.OutputURI == "" {
		return recovery.Signatures{}, fmt.Errorf("output adapter %s %q is not a file", z.OutputType, z.OutputURI)
	}
	return recovery.ReadSignedZone(z.OutputURI, z.Name)
}

func runAssess(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	var delivery time.Duration
	if s := c.String("delivery"); s != "" {
		d, err := config.ParseISODuration(s)
		if err != nil {
			return usagef("--delivery: %v", err)
		}
		delivery = d
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
	snap, err := take(ctx, cfg, hsmcheck.Request{})
	if err != nil {
		return err
	}
	l, err := openLedger(ctx, c, cfg, true)
	if err != nil {
		return err
	}
	defer l.Close()
	store, err := l.Ceremonies(ctx)
	if err != nil {
		return err
	}
	book, err := l.DS(ctx)
	if err != nil {
		return err
	}
	in := recovery.Input{Now: time.Now().UTC(), State: snap.State, Store: store, Tokens: recovery.Tokens(snap.Results),
		Delivery: delivery, ReadZone: readSigned, Book: book}
	in.Parent = parent.ByZone(ctx, cfg.ParentConfig(), snap.State.ZoneNames())
	a := recovery.Assess(in)
	a.Delivery = c.String("delivery")
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, a.Doc()); err != nil {
			return err
		}
	} else {
		a.WriteText(c.App.Writer)
	}
	if a.Exit != 0 {
		return exit(a.Exit, nil)
	}
	return nil
}

func runVerifyRestore(c *cli.Context) error {
	r, err := begin(c)
	if err != nil {
		return err
	}
	defer r.end()
	cfg, ctx := r.cfg, r.ctx
	snap, err := take(ctx, cfg, hsmcheck.Request{})
	if err != nil {
		return err
	}
	for _, r := range snap.Results {
		if r.Err != nil {
			return r.Err
		}
	}
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	store, err := l.Ceremonies(ctx)
	if err != nil {
		return err
	}
	v := recovery.Verify(snap.State, store, recovery.Tokens(snap.Results))
	if v.Complete {
		if err := recovery.RecordRestore(ctx, l, snap.Results, v); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, v.Doc()); err != nil {
			return err
		}
	} else {
		v.WriteText(c.App.Writer)
	}
	if !v.Complete {
		return exit(exitProblems, nil)
	}
	return nil
}
