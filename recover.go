package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/ceremony"
	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/recovery"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "recovery when HSMs lost their keys: assess, then verify the restore",
		Description: `Works with the enforcer daemon down: it reads the database file and the
tokens directly.`,
		Subcommands: []*cli.Command{
			{
				Name:      "assess",
				Usage:     "which HSMs lost which keys, what the backup brings back, which zones must go insecure",
				UsageText: "ods-keyguard recover assess [--delivery DURATION] [--json]",
				Description: `First line, the verdict: nothing lost; some HSMs lost keys another still
holds (replace them from their peers, do not restore from a backup token);
or every HSM lost keys (restore from the backup token), with the keys the
last confirmed ceremony has and those lost for good.
Then each HSM, each lost key, and each zone: the earliest RRSIG expiration
in its signed output, the time left, and the latest moment to request DS
removal so the parent's DS is gone before then (DS TTL, propagation and
registration delay of the policy). With --delivery (ISO 8601, e.g. P3D)
each zone "can wait for the new HSMs" or must "go insecure". A signed file
that cannot be read counts as the worst case.

Exit status: 0 nothing lost; 1 keys lost but recoverable; 2 keys lost for
good or a zone must go insecure; 3 could not determine.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "delivery", Usage: "how long until the new HSMs are in service (`DURATION`, e.g. P3D)"},
					&cli.BoolFlag{Name: "json", Usage: "print a JSON document"},
				},
				Action: runAssess,
			},
			{
				Name:      "verify",
				Usage:     "after restoring from the backup token: is every backed-up key back?",
				UsageText: "ods-keyguard recover verify [--json]",
				Description: `Every key of the last confirmed ceremony (and every needed key an earlier
ceremony covers) must be on every token with the public key the ceremony
recorded. Keys the enforcer used after the last ceremony are listed as lost,
with their zones. Each token's serial is compared with those the ceremonies
recorded. A complete restore is added to the history.

Exit status: 0 complete; 1 incomplete; 3 could not determine.`,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON document"}},
				Action: runVerifyRestore,
			},
		},
	}
}

// recoveryTokens turns token results into what recovery works with.
func recoveryTokens(results []hsmcheck.Result) []recovery.TokenKeys {
	var out []recovery.TokenKeys
	for _, r := range results {
		t := recovery.TokenKeys{Token: recovery.Token{Name: r.Token.Describe(), Repository: r.Token.Repository, Err: r.Err}}
		if inv := r.Contents; inv != nil {
			t.Serial = inv.Serial
			t.Has = func(l string) bool { _, n := inv.Find(l); return n > 0 }
			t.Fingerprint = func(l string) (string, bool) { k, n := inv.Find(l); return k.Fingerprint, n > 0 }
		}
		out = append(out, t)
	}
	return out
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
	snap, err := take(c.Context, cfg)
	if err != nil {
		return err
	}
	store, err := snap.ceremonies()
	if err != nil {
		return err
	}
	var tokens []recovery.Token
	for _, t := range recoveryTokens(snap.results) {
		tokens = append(tokens, t.Token)
	}
	a := recovery.Assess(recovery.Input{Now: time.Now().UTC(), State: snap.state, Store: store, Tokens: tokens,
		Delivery: delivery, ReadZone: readSigned})
	a.Delivery = c.String("delivery")
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, a); err != nil {
			return err
		}
	} else {
		printAssessment(c.App.Writer, a)
	}
	if a.Exit != 0 {
		return withCode(a.Exit, nil)
	}
	return nil
}

func printAssessment(w io.Writer, a *recovery.Assessment) {
	fmt.Fprintf(w, "recover assess: %s\n", a.Summary)
	for _, h := range a.HSMs {
		switch {
		case !h.Reachable:
			fmt.Fprintf(w, "HSM %s: UNREACHABLE (%s): counted as holding nothing\n", h.Name, h.Error)
		case len(h.Missing) == 0:
			fmt.Fprintf(w, "HSM %s: all %d needed keys present\n", h.Name, h.Present)
		default:
			fmt.Fprintf(w, "HSM %s: %d needed keys present, %d missing\n", h.Name, h.Present, len(h.Missing))
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
			sig = fmt.Sprintf("earliest RRSIG expires %s (%s left, %s %s)", z.Expires.Format("2006-01-02 15:04 MST"), z.Left, z.Signatures.Owner, z.Signatures.Type)
		}
		ds := "no DS at the parent"
		if z.DSAtParent {
			ds = "DS removal by " + z.DSRemovalBy.Format("2006-01-02 15:04 MST")
		}
		decision := ""
		if z.Decision != "" {
			decision = strings.ToUpper(z.Decision) + ": "
		}
		fmt.Fprintf(w, "ZONE %s: %s; %s; %s%s\n", z.Zone, sig, ds, decision, z.Advice)
	}
}

func runVerifyRestore(c *cli.Context) error {
	cfg, err := commandConfig(c)
	if err != nil {
		return err
	}
	snap, err := take(c.Context, cfg)
	if err != nil {
		return err
	}
	store, err := snap.ceremonies()
	if err != nil {
		return err
	}
	for _, r := range snap.results {
		if r.Err != nil {
			return r.Err
		}
	}
	v := recovery.Verify(snap.state, store, recoveryTokens(snap.results))
	if v.Complete {
		if err := recordRestore(cfg, snap.results, v); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, v); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "recover verify: %s\n", v.Summary)
		for _, h := range v.HSMs {
			fmt.Fprintf(c.App.Writer, "HSM %s: %d missing, %d another key pair; %s\n", h.Name, len(h.Missing), len(h.Differs), h.SerialNote)
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
		return withCode(exitProblems, nil)
	}
	return nil
}

// recordRestore adds the restore, with the new token serials, to the history.
func recordRestore(cfg *config.Config, results []hsmcheck.Result, v *recovery.Verification) error {
	lock, err := stateLock(cfg)
	if err != nil {
		return err
	}
	defer lock.Release()
	store, err := ledger.Load(cfg.StateDir)
	if err != nil {
		return err
	}
	byRepo := map[string][]ledger.TokenRecord{}
	for _, r := range results {
		byRepo[r.Token.Repository] = append(byRepo[r.Token.Repository], ledger.TokenRecord{
			Name: r.Token.Name, Kind: r.Token.Kind, Label: r.Contents.Label, Serial: r.Contents.Serial})
	}
	now := time.Now().UTC()
	for repo, toks := range byRepo {
		if sameRestore(store, repo, toks) {
			continue // verified again: recorded once
		}
		c := &ledger.Ceremony{ID: ledger.NewID(repo, now), Repository: repo, Status: ledger.Restored,
			Operator: ceremony.Operator(""), Prepared: now, Ended: now, Tokens: toks,
			Checks: []string{v.Summary}}
		if err := store.End(c); err != nil {
			return err
		}
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

// sameRestore reports whether repo's newest record is a restore of the same
// tokens.
func sameRestore(store *ledger.Store, repo string, toks []ledger.TokenRecord) bool {
	for _, c := range store.History() {
		if c.Repository != repo {
			continue
		}
		if c.Status != ledger.Restored || len(c.Tokens) != len(toks) {
			return false
		}
		for i, t := range toks {
			if c.Tokens[i].Serial != t.Serial || c.Tokens[i].Name != t.Name {
				return false
			}
		}
		return true
	}
	return false
}
