package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/when"
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
	if pc := cfg.ParentConfig(); pc.Enabled() {
		var zones []string
		for _, z := range snap.State.Zones {
			zones = append(zones, z.Name)
		}
		in.Parent = map[string]parent.Answer{}
		for _, a := range parent.Read(ctx, pc, zones) {
			in.Parent[a.Zone] = a
		}
	}
	a := recovery.Assess(in)
	a.Delivery = c.String("delivery")
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, struct {
			Schema string `json:"schema"`
			*recovery.Assessment
		}{"ods-keyguard/recover-assess/1", a}); err != nil {
			return err
		}
	} else {
		printAssessment(c.App.Writer, a)
	}
	if a.Exit != 0 {
		return exit(a.Exit, nil)
	}
	return nil
}

func printAssessment(w io.Writer, a *recovery.Assessment) {
	fmt.Fprintf(w, "recover assess: %s\n", a.Summary)
	for _, h := range a.HSMs {
		switch {
		case !h.Reachable:
			fmt.Fprintf(w, "HSM %s: UNREACHABLE (%s): counted as holding nothing\n", h.Describe(), h.Error)
		case len(h.Missing) == 0:
			fmt.Fprintf(w, "HSM %s: all %d needed keys present\n", h.Describe(), h.Present)
		default:
			fmt.Fprintf(w, "HSM %s: %d needed keys present, %d missing\n", h.Describe(), h.Present, len(h.Missing))
		}
	}
	for _, l := range a.Lost {
		where := "lost for good: made after the last confirmed ceremony"
		if l.Recoverable {
			where = "on the backup token of ceremony " + l.Ceremony
		}
		fmt.Fprintf(w, "KEY %s: %s\n", keyLine(l), where)
	}
	for _, z := range a.Zones {
		sig := "signed output unreadable: " + z.Error
		if z.Error == "" {
			left := when.Duration(z.Left) + " left"
			if z.Left < 0 {
				left = "expired " + when.Duration(z.Left) + " ago"
			}
			sig = fmt.Sprintf("earliest RRSIG expires %s (%s, %s %s)", z.Expires.Format(when.Display), left, z.Signatures.Owner, z.Signatures.Type)
		}
		ds := "no DS at the parent"
		if z.DSAtParent {
			ds = "DS removal by " + z.DSRemovalBy.Format(when.Display)
		}
		decision := ""
		if z.Decision != "" {
			decision = strings.ToUpper(z.Decision) + ": "
		}
		fmt.Fprintf(w, "ZONE %s: %s; %s (DS known from %s); %s%s\n", z.Zone, sig, ds, z.DSSource, decision, z.Advice)
	}
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
		if err := writeJSON(c.App.Writer, struct {
			Schema string `json:"schema"`
			*recovery.Verification
		}{"ods-keyguard/recover-verify/1", v}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "recover verify: %s\n", v.Summary)
		for _, h := range v.HSMs {
			fmt.Fprintf(c.App.Writer, "HSM %s: %d missing, %d another key pair; %s\n", h.Describe(), len(h.Missing), len(h.Differs), h.SerialNote)
			for _, l := range h.Missing {
				fmt.Fprintf(c.App.Writer, "  MISSING %s\n", keyLine(l))
			}
			for _, l := range h.Differs {
				fmt.Fprintf(c.App.Writer, "  DIFFERS %s: another key pair under its CKA_ID\n", keyLine(l))
			}
		}
		for _, l := range v.Lost {
			fmt.Fprintf(c.App.Writer, "LOST %s: used after the last confirmed ceremony, on no HSM\n", keyLine(l))
		}
	}
	if !v.Complete {
		return exit(exitProblems, nil)
	}
	return nil
}

// keyLine names a key with its role, use and zones: "LOC ZSK (in use, example.com)".
func keyLine(l recovery.LostKey) string {
	zones := "no zone"
	if len(l.Zones) > 0 {
		zones = strings.Join(l.Zones, ",")
	}
	return fmt.Sprintf("%s %s (%s, %s)", l.Locator, l.Role, l.Use, zones)
}
