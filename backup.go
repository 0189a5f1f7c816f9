package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/ceremony"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

func backupCommand() *cli.Command {
	repoFlag := &cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only repository `REPO` (default: every repository)"}
	operatorFlag := &cli.StringFlag{Name: "operator", Usage: "who runs the ceremony (default $SUDO_USER, else $USER)"}
	return &cli.Command{
		Name:  "backup",
		Usage: "the backup ceremony: prepare, done, rollback, history",
		Description: `The backup ceremony of the key backup procedure, one per repository:

   1. ods-keyguard backup prepare        flags the keys, checks them on every HSM
   2-6. back the HSM up onto a backup token, return it to its storage
   7. ods-keyguard backup done --backup-token NAME
                                         checks the keys on the HSMs and the
                                         backup token, then commits

Only a ceremony confirmed by backup done counts as a backup for check and the
DS hook. A repository without <RequireBackup/> gets ceremonies too: the rule
is the procedure's, not the enforcer's setting.

Exit status: 0 done; 1 refused (nothing committed); 2 bad usage; 3 could not
act (configuration, token, database, enforcer unreachable, state file).`,
		Subcommands: []*cli.Command{
			{
				Name:      "prepare",
				Usage:     "open a ceremony: flag the keys to back up and check them on every HSM",
				UsageText: "ods-keyguard backup prepare [-r REPO] [--operator NAME]",
				Description: `Runs ods-enforcer backup prepare -r REPO (for a repository with
<RequireBackup/>), reads the Prepared keys, checks that each is on the
repository's token and every mirror, and writes the ceremony's manifest. If a
key is missing the enforcer is rolled back and nothing is opened. Refuses
when a ceremony of the repository is already open.`,
				Flags: []cli.Flag{repoFlag, operatorFlag},
				Action: func(c *cli.Context) error {
					env, repos, err := ceremonyEnv(c)
					if err != nil {
						return err
					}
					return ceremony.Prepare(c.Context, env, repos, ceremony.Operator(c.String("operator")))
				},
			},
			{
				Name:      "done",
				Usage:     "confirm a ceremony after the HSM was backed up: verify, then commit",
				UsageText: "ods-keyguard backup done [-r REPO] [--backup-token NAME] [--operator NAME]",
				Description: `Refuses, and commits nothing, when a manifest key is no longer on the
token or a mirror, when the enforcer's Prepared set is no longer the
manifest's, or (with --backup-token) when the backup token lacks a manifest
key or holds another key pair under its CKA_ID. Otherwise runs ods-enforcer
backup commit -r REPO, checks that exactly the manifest's keys are Done,
and records the ceremony as confirmed. Without --backup-token the record
says the backup was attested by the operator, not verified.`,
				Flags: []cli.Flag{repoFlag, operatorFlag,
					&cli.StringFlag{Name: "backup-token", Usage: "verify the backup on [backup_token.`NAME`] of the configuration"}},
				Action: func(c *cli.Context) error {
					env, repos, err := ceremonyEnv(c)
					if err != nil {
						return err
					}
					if c.String("repository") == "" {
						repos = nil // every repository with an open ceremony
					}
					confirmed, err := ceremony.Done(c.Context, env, repos, c.String("backup-token"), ceremony.Operator(c.String("operator")))
					if len(confirmed) > 0 {
						// What the DS hook withheld for want of this backup can go now.
						lg := newLogger(c.App.ErrWriter)
						defer lg.close()
						if _, rerr := releasePending(c.Context, env.Cfg, c.App.Writer, lg); rerr != nil {
							err = errors.Join(err, fmt.Errorf("hook release: %w", rerr))
						}
					}
					return err
				},
			},
			{
				Name:      "rollback",
				Usage:     "abandon an open ceremony and unflag the enforcer's Prepared keys",
				UsageText: "ods-keyguard backup rollback [-r REPO] [--operator NAME] [--reason TEXT]",
				Flags: []cli.Flag{repoFlag, operatorFlag,
					&cli.StringFlag{Name: "reason", Usage: "why, for the history"}},
				Action: func(c *cli.Context) error {
					env, repos, err := ceremonyEnv(c)
					if err != nil {
						return err
					}
					if c.String("repository") == "" {
						repos = nil
					}
					return ceremony.Rollback(c.Context, env, repos, ceremony.Operator(c.String("operator")), c.String("reason"))
				},
			},
			{
				Name:      "history",
				Usage:     "list confirmed and abandoned ceremonies, newest first",
				UsageText: "ods-keyguard backup history [--json]",
				Description: `Text: one line per ceremony (ID, REPOSITORY, STATUS, PREPARED, ENDED,
KEYS, BACKUP), then the open ones. BACKUP is "verified:NAME" when the backup
token was read and checked, "attested" when the operator's word was taken.`,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON document"}},
				Action: func(c *cli.Context) error {
					cfg, err := commandConfig(c)
					if err != nil {
						return err
					}
					store, err := ledger.Load(cfg.StateDir)
					if err != nil {
						return err
					}
					var open []*ledger.Ceremony
					for _, r := range store.OpenRepositories() {
						open = append(open, store.Open(r))
					}
					if c.Bool("json") {
						return writeJSON(c.App.Writer, struct {
							Ceremonies []*ledger.Ceremony `json:"ceremonies"`
							Open       []*ledger.Ceremony `json:"open"`
						}{nonNil(store.History()), nonNil(open)})
					}
					return printHistory(c.App.Writer, store.History(), open)
				},
			},
		},
	}
}

func nonNil(cs []*ledger.Ceremony) []*ledger.Ceremony {
	if cs == nil {
		return []*ledger.Ceremony{}
	}
	return cs
}

func ceremonyEnv(c *cli.Context) (*ceremony.Env, []string, error) {
	cfg, err := commandConfig(c)
	if err != nil {
		return nil, nil, err
	}
	repos, err := cfg.RepositoryNames(c.String("repository"))
	if err != nil {
		return nil, nil, err
	}
	env := &ceremony.Env{Cfg: cfg, Out: c.App.Writer}
	// A failpoint for the tests: die like kill -9 right after the enforcer's
	// commit, before anything is recorded.
	if os.Getenv("ODS_KEYGUARD_FAILPOINT") == "after-commit" {
		env.AfterCommit = func() error { os.Exit(137); return nil }
	}
	return env, repos, nil
}

func printHistory(w io.Writer, hist, open []*ledger.Ceremony) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREPOSITORY\tSTATUS\tPREPARED\tENDED\tKEYS\tBACKUP")
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02T15:04Z")
	}
	for _, c := range append(append([]*ledger.Ceremony(nil), hist...), open...) {
		backup := "-"
		switch {
		case c.Status != ledger.Confirmed:
		case c.Verified():
			backup = "verified:" + c.BackupToken.Name
		default:
			backup = "attested"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.ID, c.Repository, c.Status, stamp(c.Prepared), stamp(c.Ended), len(c.Keys), backup)
	}
	if len(hist)+len(open) == 0 {
		_, err := fmt.Fprintln(w, "no backup ceremony yet")
		return err
	}
	return tw.Flush()
}
