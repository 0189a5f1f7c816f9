package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/backup"
	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hooks"
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
is the procedure's, not the enforcer's setting. Every scheduled backup is a
ceremony: with nothing new, prepare takes every needed key.

Exit status: 0 done; 1 refused (the message says what state the enforcer and
the history are in); 2 bad usage; 3 could not act (configuration, token,
database, enforcer unreachable, state file).`,
		Subcommands: []*cli.Command{
			{
				Name:      "prepare",
				Usage:     "open a ceremony: flag the keys to back up and check them on every HSM",
				UsageText: "ods-keyguard backup prepare [-r REPO] [--operator NAME] [--json]",
				Description: `Records the ceremony, runs ods-enforcer backup prepare -r REPO (for a
repository with <RequireBackup/>), and takes into the manifest every needed
key that no confirmed ceremony covers (Prepared, committed by hand, imported,
or made before RequireBackup was turned on); with nothing new, every needed
key. Each must be on the repository's token and every mirror, or the
enforcer is rolled back and nothing is opened. Refuses when a ceremony of
the repository is already open; takes up one a crash left preparing.`,
				Flags:  []cli.Flag{repoFlag, operatorFlag, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(func(r *job) error { return runCeremony(r, "prepare") }),
			},
			{
				Name:      "done",
				Usage:     "confirm a ceremony after the HSM was backed up: verify, then commit",
				UsageText: "ods-keyguard backup done [-r REPO] [--backup-token NAME] [--operator NAME] [--json]",
				Description: `Refuses, and commits nothing, when a manifest key is no longer on the
token or a mirror, when the enforcer's Prepared set is no longer the
manifest's, or (with --backup-token) when the backup token lacks a manifest
key or holds another key pair under its CKA_ID. The backup token should hold
every key still needed: an older key it lacks is a warning that names where
that key's backup is. Otherwise runs ods-enforcer backup commit -r REPO,
checks that exactly the manifest's keys are Done, records the ceremony as
confirmed, and releases what the DS hook withheld for want of it. Without
--backup-token the record says the backup was attested by the operator, not
verified.`,
				Flags: []cli.Flag{repoFlag, operatorFlag, jsonFlag(), timeoutFlag(defaultTimeout),
					&cli.StringFlag{Name: "backup-token", Usage: "verify the backup on [backup_token.`NAME`] of the configuration"}},
				Action: withJob(func(r *job) error { return runCeremony(r, "done") }),
			},
			{
				Name:      "rollback",
				Usage:     "abandon an open ceremony and unflag the enforcer's Prepared keys",
				UsageText: "ods-keyguard backup rollback [-r REPO] [--operator NAME] [--reason TEXT] [--json]",
				Description: `Refuses a ceremony that is committing, or whose keys the enforcer has Done
already: run backup done, which verifies and records it.`,
				Flags: []cli.Flag{repoFlag, operatorFlag, jsonFlag(), timeoutFlag(defaultTimeout),
					&cli.StringFlag{Name: "reason", Usage: "why, for the history"}},
				Action: withJob(func(r *job) error { return runCeremony(r, "rollback") }),
			},
			{
				Name:      "history",
				Usage:     "list confirmed and abandoned ceremonies, newest first",
				UsageText: "ods-keyguard backup history [--json]",
				Description: `Text: one line per ceremony (ID, REPOSITORY, STATUS, PREPARED, ENDED,
KEYS, BACKUP), then the open ones. BACKUP is "verified:NAME" when the backup
token was read and checked, "attested" when the operator's word was taken.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runHistory),
			},
		},
	}
}

// runCeremony runs one ceremony step. In JSON mode, what the step tells the
// operator goes into the document's messages.
func runCeremony(r *job, step string) error {
	c, cfg, ctx := r.c, r.cfg, r.ctx
	repos, err := cfg.RepositoryNames(c.String("repository"))
	if err != nil {
		return err
	}
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	var text bytes.Buffer
	out := c.App.Writer
	if c.Bool("json") {
		out = &text
	}
	env, err := ceremonyEnv(cfg, l, out)
	if err == nil {
		env.Release = func(ctx context.Context) error { return releaseAfterDone(ctx, c, cfg, l, out) }
	}
	operator := ledger.Operator(c.String("operator"))
	if c.String("repository") == "" && step != "prepare" {
		repos = nil // every repository with an open ceremony
	}
	var cs []*ledger.Ceremony
	switch {
	case err != nil:
		// A token's configuration (a pin_file, say) failed: reported as
		// the step's failure, in its document too.
	case step == "prepare":
		cs, err = backup.Prepare(ctx, env, repos, operator)
	case step == "done":
		cs, err = backup.Done(ctx, env, repos, c.String("backup-token"), operator)
	case step == "rollback":
		cs, err = backup.Rollback(ctx, env, repos, operator, c.String("reason"))
	}
	if c.Bool("json") {
		if jerr := writeJSON(c.App.Writer, backup.StepDoc(step, cs, text.String(), err)); jerr != nil {
			return jerr
		}
	}
	return err
}

// ceremonyEnv gives a ceremony step what it works with, from the
// configuration.
func ceremonyEnv(cfg *config.Config, l *ledger.Ledger, out io.Writer) (*backup.Env, error) {
	tokens, err := cfg.Tokens()
	if err != nil {
		return nil, err
	}
	repos := map[string]backup.Repository{}
	for _, r := range cfg.ODS.Repositories {
		repos[r.Name] = backup.Repository{RequireBackup: r.RequireBackup, TokenLabel: r.TokenLabel}
	}
	return &backup.Env{Ledger: l, Source: source(cfg), LockWait: cfg.LockWait,
		CLI:          enforcer.CLI{Program: cfg.EnforcerCLI, Socket: cfg.ODS.SocketFile},
		Repositories: repos, Tokens: tokens, BackupToken: cfg.BackupToken, Out: out}, nil
}

// releaseAfterDone runs the releases once a ceremony is confirmed: the
// zones the publish gate held for want of this backup are published first,
// then what the DS hook withheld goes to the parent, so that no DS reaches
// the parent before the DNSKEY it leads to is served. It runs on the
// ceremony's own ledger, opened once in this process.
func releaseAfterDone(ctx context.Context, c *cli.Context, cfg *config.Config, l *ledger.Ledger, out io.Writer) error {
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	if err := publishAfterDone(ctx, cfg, l, log, out); err != nil {
		return err
	}
	g, err := newGuard(c, cfg, l, log)
	if err != nil {
		return err
	}
	// The ceremony holds the state lock: release runs under it, in this
	// process, without taking it again.
	_, err = g.ReleaseLocked(ctx, out)
	return err
}

// publishAfterDone publishes what the gate held, now that a ceremony
// covers more keys; nothing when [publish] is not configured.
func publishAfterDone(ctx context.Context, cfg *config.Config, l *ledger.Ledger, log *hooks.Syslog, out io.Writer) error {
	if !cfg.PublishConfig().Configured() {
		return nil
	}
	g, err := gateOn(cfg, l, log.SyslogOnly(), "backup done")
	if err != nil {
		return err
	}
	rep, err := g.Release(ctx, "")
	if err != nil {
		return fmt.Errorf("publish release: %w", err)
	}
	for _, r := range rep.Results {
		if r.Action == ledger.PublishPublished {
			fmt.Fprintf(out, "released: publish zone %s serial %d\n", r.Zone, r.Serial)
		}
	}
	return nil
}

func runHistory(r *job) error {
	c := r.c
	_, store, err := r.ceremonies(true)
	if err != nil {
		return err
	}
	return output(c, backup.HistoryDoc(store), func(w io.Writer) error { return backup.WriteHistory(w, store) })
}
