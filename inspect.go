package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/when"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "inventory",
		Usage:     "list every key known to the enforcer or found on a token",
		UsageText: "ods-keyguard inventory [--repository R] [--json] [-t SECONDS]",
		Description: `One row per key: locator, repository, policy, role, zones, use (pool,
assigned, in use, retiring, deleted, or orphan for a key on a token that the
enforcer does not know), the enforcer's backup state, the confirmed
ceremony that covers it, and present/missing on each token of the
repository (its own and every mirror).

Exit status: 0 listed; 3 the database or a token could not be read (the
list is printed all the same, with "unknown" where a token was unreadable).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only keys of repository `R`"},
			jsonFlag(), timeoutFlag(defaultTimeout),
		},
		Action: func(c *cli.Context) error {
			cfg, err := commandConfig(c)
			if err != nil {
				return err
			}
			repo := c.String("repository")
			if repo != "" {
				if _, err := cfg.RepositoryNames(repo); err != nil {
					return err
				}
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
			rep := inventory.Build(snap.State, snap.Results, repo)
			rep.Cover(store.Coverage(), requireBackup(cfg))
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, struct {
					Schema string             `json:"schema"`
					Tokens []inventory.Token  `json:"tokens"`
					Keys   []inventory.Row    `json:"keys"`
					Orphan []inventory.Orphan `json:"orphans"`
				}{"ods-keyguard/inventory/1", rep.Tokens, rep.Rows, rep.Orphans})
			} else {
				err = printInventory(c.App.Writer, rep)
			}
			if err != nil {
				return err
			}
			if reportUnreadable(c.App.ErrWriter, snap.Results) {
				return exit(exitUnknown, nil)
			}
			return nil
		},
	}
}

func printInventory(w io.Writer, rep *inventory.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"LOCATOR", "REPOSITORY", "POLICY", "ROLE", "USE", "BACKUP", "CEREMONY", "ZONES"}
	for _, t := range rep.Tokens {
		head = append(head, t.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rep.Rows {
		cells := []string{r.Locator, r.Repository, dash(r.Policy), r.Role, r.Use, r.Backup, dash(r.CoveredBy), dash(strings.Join(r.Zones, ","))}
		for _, t := range rep.Tokens {
			p, ok := r.Present[t.Name]
			if !ok {
				p = "-"
			}
			cells = append(cells, p)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, o := range rep.Orphans {
		var repo string
		for _, t := range rep.Tokens {
			if t.Name == o.Token {
				repo = t.Repository
			}
		}
		cells := []string{o.ID, repo, "-", "-", "orphan", "-", "-", "-"}
		for _, t := range rep.Tokens {
			p := "-"
			if t.Name == o.Token {
				p = inventory.Present
			}
			cells = append(cells, p)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "reconcile the enforcer's keys with every token",
		UsageText: "ods-keyguard verify [--json] [-t SECONDS]",
		Description: `Problems: a key of the enforcer (not DELETE) missing from its repository's
token or from one of its mirrors; a key whose type or size differs from the
enforcer's record; a public key that differs between tokens; two private
keys under one CKA_ID. Private keys on a token that the enforcer does not
know are listed as orphans, for information.

Output: a summary line, then one line per problem ("PROBLEM kind token
locator: detail") and per orphan ("ORPHAN token id label").

Exit status: 0 clean; 1 problems found; 2 bad usage; 3 could not determine
(module missing, token absent or not answering, wrong PIN, database
unreadable).`,
		Flags: []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
		Action: func(c *cli.Context) error {
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
			rep := inventory.Build(snap.State, snap.Results, "")
			verdict := rep.Verdict()
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, struct {
					Schema   string              `json:"schema"`
					Verdict  string              `json:"verdict"`
					Tokens   []inventory.Token   `json:"tokens"`
					Keys     int                 `json:"key_count"`
					Problems []inventory.Problem `json:"problems"`
					Orphans  []inventory.Orphan  `json:"orphans"`
				}{"ods-keyguard/verify/1", verdict, rep.Tokens, len(rep.Rows), rep.Problems, rep.Orphans})
			} else {
				err = printVerify(c.App.Writer, rep, verdict)
			}
			if err != nil {
				return err
			}
			if reportUnreadable(c.App.ErrWriter, snap.Results) {
				return exit(exitUnknown, nil)
			}
			if len(rep.Problems) > 0 {
				return exit(exitProblems, nil)
			}
			return nil
		},
	}
}

func printVerify(w io.Writer, rep *inventory.Report, verdict string) error {
	reachable := 0
	for _, t := range rep.Tokens {
		if t.Reachable {
			reachable++
		}
	}
	fmt.Fprintf(w, "verify: %s: %d keys, %d of %d tokens read, %d problems, %d orphans\n",
		verdict, len(rep.Rows), reachable, len(rep.Tokens), len(rep.Problems), len(rep.Orphans))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "PROBLEM %s %s %s: %s\n", p.Kind, p.Token, p.Locator, p.Detail)
	}
	for _, o := range rep.Orphans {
		fmt.Fprintf(w, "ORPHAN %s %s %q\n", o.Token, o.ID, o.Label)
	}
	return nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "summarise each repository: backup states, rule 1 breaches, tokens",
		UsageText: "ods-keyguard status [--json] [-t SECONDS]",
		Description: `Per repository: whether the enforcer requires backups there, each token
(reachable, serial, key count), the keys by the enforcer's backup state and
those covered by ods-keyguard only (Not Required in the enforcer, in a
confirmed ceremony), the last confirmed backup ceremony and the open one,
and the keys in use without a confirmed backup: a record rumoured or
omnipresent while the key is in no confirmed ceremony or, with
RequireBackup, Required or Prepared in the enforcer. OpenDNSSEC 2.1
publishes and signs with such keys; rule 1 of the backup procedure forbids
it.

Exit status: 0 reported (an unreachable token is part of the report); 3
configuration, state or database unreadable.`,
		Flags: []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
		Action: func(c *cli.Context) error {
			r, err := begin(c)
			if err != nil {
				return err
			}
			defer r.end()
			cfg, ctx := r.cfg, r.ctx
			snap, err := take(ctx, cfg, hsmcheck.Request{NoPublic: true})
			if err != nil {
				return err
			}
			l, err := r.ledger(true)
			if err != nil {
				return err
			}
			store, err := l.Ceremonies(ctx)
			if err != nil {
				return err
			}
			var repos []inventory.RepositoryConf
			for _, r := range cfg.ODS.Repositories {
				repos = append(repos, inventory.RepositoryConf{Name: r.Name, RequireBackup: r.RequireBackup})
			}
			st := inventory.Status(snap.State, snap.Results, store, repos)
			if c.Bool("json") {
				return writeJSON(c.App.Writer, struct {
					Schema       string                       `json:"schema"`
					Repositories []inventory.RepositoryStatus `json:"repositories"`
				}{"ods-keyguard/status/1", st})
			}
			printStatus(c.App.Writer, st)
			return nil
		},
	}
}

func printStatus(w io.Writer, repos []inventory.RepositoryStatus) {
	for _, r := range repos {
		gate := "backups not required by the enforcer"
		if r.RequireBackup {
			gate = "RequireBackup"
		}
		fmt.Fprintf(w, "repository %s (%s)\n", r.Name, gate)
		for _, t := range r.Tokens {
			if !t.Reachable {
				fmt.Fprintf(w, "  %s: UNREACHABLE: %s\n", t.Describe, t.Error)
				continue
			}
			fmt.Fprintf(w, "  %s: reachable, token %q serial %s, %d private keys\n", t.Describe, t.Label, t.Serial, t.Keys)
		}
		b := r.Backup
		fmt.Fprintf(w, "  keys: %d (Not Required %d, Required %d, Prepared %d, Done %d)\n", r.Keys, b.NotRequired, b.Required, b.Prepared, b.Done)
		if r.KeyguardOnly > 0 {
			fmt.Fprintf(w, "  covered by ods-keyguard only (Not Required in the enforcer, in a confirmed ceremony): %d\n", r.KeyguardOnly)
		}
		if c := r.LastConfirmed; c != nil {
			fmt.Fprintf(w, "  last confirmed backup: %s, %s, %d keys\n", c.ID, c.Ended.Format(when.Display), len(c.Keys))
		} else {
			fmt.Fprintf(w, "  last confirmed backup: none\n")
		}
		if c := r.Open; c != nil {
			fmt.Fprintf(w, "  open ceremony: %s (%s), %d keys\n", c.ID, c.Status, len(c.Keys))
		}
		fmt.Fprintf(w, "  in use without a confirmed backup: %d\n", len(r.Unbacked))
		for _, u := range r.Unbacked {
			fmt.Fprintf(w, "    %s %s %d %s backup %s (%s)\n", u.Zone, u.Role, u.KeyTag, u.Locator, u.Backup, strings.Join(u.Live, ", "))
		}
	}
}
