package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// commandConfig refuses positional arguments and loads the configuration:
// what every command that takes none does first.
func commandConfig(c *cli.Context) (*config.Config, error) {
	if err := noArgs(c); err != nil {
		return nil, err
	}
	return loadConfig(c)
}

// loadConfig reads the configuration named by --config or its defaults.
func loadConfig(c *cli.Context) (*config.Config, error) {
	return config.Load(config.Path(c.String("config")))
}

// readState reads the enforcer's database once.
func readState(ctx context.Context, cfg *config.Config) (*enforcer.State, error) {
	return enforcer.ReadDatastore(ctx, cfg.ODS.Datastore)
}

// snapshot is one read of the enforcer and of every token.
type snapshot struct {
	cfg     *config.Config
	state   *enforcer.State
	results []hsmcheck.Result
}

// ceremonies reads the ceremony state, for the commands that need it: a
// damaged state file does not stop verify or inventory.
func (s *snapshot) ceremonies() (*ledger.Store, error) { return ledger.Load(s.cfg.StateDir) }

// take reads the database and every repository's and mirror's token, in
// one pass.
func take(ctx context.Context, cfg *config.Config) (*snapshot, error) {
	return takeWith(ctx, cfg, hsmcheck.Request{})
}

// takeWith is take with another request (check reads no public objects).
func takeWith(ctx context.Context, cfg *config.Config, req hsmcheck.Request) (*snapshot, error) {
	tokens, err := cfg.Tokens()
	if err != nil {
		return nil, err
	}
	snap, err := inventory.Take(ctx, cfg.ODS.Datastore, tokens, req)
	if err != nil {
		return nil, err
	}
	return &snapshot{cfg: cfg, state: snap.State, results: snap.Results}, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// reportUnreadable prints one line per token that could not be read.
func reportUnreadable(w io.Writer, results []hsmcheck.Result) bool {
	bad := false
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(w, "ods-keyguard: %s\n", oneLine(r.Err.Error()))
			bad = true
		}
	}
	return bad
}

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "inventory",
		Usage:     "list every key known to the enforcer or found on a token",
		UsageText: "ods-keyguard inventory [--repository R] [--json]",
		Description: `One row per key: locator, repository, policy, role, zones, use (pool,
assigned, in use, retiring, deleted, or orphan for a key on a token that the
enforcer does not know), the enforcer's backup state, and present/missing on
each token of the repository (its own and every mirror).

Exit status: 0 listed; 3 the database or a token could not be read (the
list is printed all the same, with "unknown" where a token was unreadable).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only keys of repository `R`"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON document"},
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
			snap, err := take(c.Context, cfg)
			if err != nil {
				return err
			}
			rep := inventory.Build(snap.state, snap.results, repo)
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, struct {
					Tokens []inventory.Token  `json:"tokens"`
					Keys   []inventory.Row    `json:"keys"`
					Orphan []inventory.Orphan `json:"orphans"`
				}{rep.Tokens, rep.Rows, rep.Orphans})
			} else {
				err = printInventory(c.App.Writer, rep)
			}
			if err != nil {
				return err
			}
			if reportUnreadable(c.App.ErrWriter, snap.results) {
				return withCode(exitUnknown, nil)
			}
			return nil
		},
	}
}

func printInventory(w io.Writer, rep *inventory.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"LOCATOR", "REPOSITORY", "POLICY", "ROLE", "USE", "BACKUP", "ZONES"}
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
		cells := []string{r.Locator, r.Repository, dash(r.Policy), r.Role, r.Use, r.Backup, dash(strings.Join(r.Zones, ","))}
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
		cells := []string{o.ID, "", "-", "-", "orphan", "-", "-"}
		for _, t := range rep.Tokens {
			if t.Name == o.Token {
				repo = t.Repository
			}
		}
		cells[1] = repo
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
		UsageText: "ods-keyguard verify [--json]",
		Description: `Problems: a key of the enforcer (not DELETE) missing from its repository's
token or from one of its mirrors; a key whose type or size differs from the
enforcer's record; a public key that differs between tokens. Private keys
on a token that the enforcer does not know are listed as orphans, for
information.

Output: a summary line, then one line per problem ("PROBLEM kind token
locator: detail") and per orphan ("ORPHAN token id label").

Exit status: 0 clean; 1 problems found; 2 bad usage; 3 could not determine
(module missing, token absent, wrong PIN, database unreadable).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON document"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := commandConfig(c)
			if err != nil {
				return err
			}
			snap, err := take(c.Context, cfg)
			if err != nil {
				return err
			}
			rep := inventory.Build(snap.state, snap.results, "")
			verdict := "clean"
			switch {
			case rep.Unreadable:
				verdict = "unknown"
			case len(rep.Problems) > 0:
				verdict = "problems"
			}
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, struct {
					Verdict  string              `json:"verdict"`
					Tokens   []inventory.Token   `json:"tokens"`
					Keys     int                 `json:"keys"`
					Problems []inventory.Problem `json:"problems"`
					Orphans  []inventory.Orphan  `json:"orphans"`
				}{verdict, rep.Tokens, len(rep.Rows), rep.Problems, rep.Orphans})
			} else {
				err = printVerify(c.App.Writer, rep, verdict)
			}
			if err != nil {
				return err
			}
			if reportUnreadable(c.App.ErrWriter, snap.results) {
				return withCode(exitUnknown, nil)
			}
			if len(rep.Problems) > 0 {
				return withCode(exitProblems, nil)
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
		UsageText: "ods-keyguard status",
		Description: `Per repository: whether the enforcer requires backups there, each token
(reachable, serial, key count), the keys by the enforcer's backup state,
the last confirmed backup ceremony, and the keys in use without a confirmed
backup: a record rumoured or omnipresent while the key is in no confirmed
ceremony or, with RequireBackup, not Done in the enforcer. OpenDNSSEC 2.1
publishes and signs with such keys; rule 1 of the backup procedure forbids
it.

Exit status: 0 reported; 3 configuration, state or database unreadable.`,
		Action: func(c *cli.Context) error {
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
			printStatus(c.App.Writer, snap, store)
			return nil
		},
	}
}

func printStatus(w io.Writer, snap *snapshot, store *ledger.Store) {
	in := rules.Input{RequireBackup: map[string]bool{}}
	for _, r := range snap.cfg.ODS.Repositories {
		in.RequireBackup[r.Name] = r.RequireBackup
	}
	cov := store.Coverage()
	for _, repo := range snap.cfg.ODS.Repositories {
		gate := "backups not required by the enforcer"
		if repo.RequireBackup {
			gate = "RequireBackup"
		}
		fmt.Fprintf(w, "repository %s (%s)\n", repo.Name, gate)
		for _, r := range snap.results {
			if r.Token.Repository != repo.Name {
				continue
			}
			if r.Err != nil {
				fmt.Fprintf(w, "  %s: UNREACHABLE: %s\n", r.Token.Describe(), oneLine(r.Err.Error()))
				continue
			}
			inv := r.Contents
			fmt.Fprintf(w, "  %s: reachable, token %q serial %s, %d private keys\n", r.Token.Describe(), inv.Label, inv.Serial, len(inv.Keys))
		}
		counts := map[enforcer.BackupState]int{}
		var leaks []string
		total := 0
		for _, k := range snap.state.Keys {
			if k.Repository != repo.Name || k.State == enforcer.Delete {
				continue
			}
			total++
			counts[k.Backup]++
			if in.BackedUp(cov, k) {
				continue
			}
			for _, u := range k.Uses {
				if u.Live() {
					leaks = append(leaks, fmt.Sprintf("    %s %s %d %s backup %s (%s)", u.Zone.Name, u.Role, u.KeyTag, k.Locator, k.Backup, liveRecords(u)))
				}
			}
		}
		fmt.Fprintf(w, "  keys: %d (Not Required %d, Required %d, Prepared %d, Done %d)\n", total,
			counts[enforcer.BackupNotRequired], counts[enforcer.BackupRequired], counts[enforcer.BackupPrepared], counts[enforcer.BackupDone])
		if c := store.LastConfirmed(repo.Name); c != nil {
			fmt.Fprintf(w, "  last confirmed backup: %s, %s, %d keys\n", c.ID, c.Ended.Format("2006-01-02 15:04 MST"), len(c.Keys))
		} else {
			fmt.Fprintf(w, "  last confirmed backup: none\n")
		}
		if c := store.Open(repo.Name); c != nil {
			fmt.Fprintf(w, "  open ceremony: %s (%s), %d keys\n", c.ID, c.Status, len(c.Keys))
		}
		sort.Strings(leaks)
		fmt.Fprintf(w, "  in use without a confirmed backup: %d\n", len(leaks))
		for _, l := range leaks {
			fmt.Fprintln(w, l)
		}
	}
}

// liveRecords names the records of a use that are rumoured or omnipresent.
func liveRecords(u *enforcer.Use) string {
	var out []string
	for _, t := range []enforcer.RecordType{enforcer.RecordDS, enforcer.RecordDNSKEY, enforcer.RecordRRSIGDNSKEY, enforcer.RecordRRSIG} {
		if s, ok := u.States[t]; ok && (s == enforcer.Rumoured || s == enforcer.Omnipresent) {
			out = append(out, t.String()+" "+s.String())
		}
	}
	return strings.Join(out, ", ")
}

func readTokensChild(c *cli.Context) error {
	return hsmcheck.ServeChild(c.App.Reader, c.App.Writer, hsmcheck.OpenModule)
}
