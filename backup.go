package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/backup"
	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// backupHelp is the exit status every backup command shares.
const backupHelp = `Exit status: 0 done; 1 refused (the message says what state the enforcer and
the history are in); 2 bad usage; 3 could not act (configuration, token,
database, enforcer unreachable, state file).
The manual: man ods-keyguard.`

func backupCommand() *cli.Command {
	repoFlag := &cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only repository `REPO` (default: every repository)"}
	operatorFlag := &cli.StringFlag{Name: "operator", Usage: "who runs the ceremony (default $SUDO_USER, else $USER)"}
	witnessFlag := &cli.StringSliceFlag{Name: "witness", Usage: "`NAME` of a person who witnesses the step, for the records (repeat for each)"}
	sheetFlag := &cli.StringFlag{Name: "sheet", Usage: "write the ceremony's run sheet to `FILE` (.md, or .pdf with groff)"}
	return &cli.Command{
		Name:        "backup",
		Usage:       "the backup ceremony: prepare, done, rollback, history",
		Description: backupHelp,
		Subcommands: []*cli.Command{
			{
				Name:        "prepare",
				Usage:       "open a ceremony: flag the keys to back up and check them on every HSM",
				UsageText:   "ods-keyguard backup prepare [-r REPO] [--operator NAME] [--witness NAME]... [--sheet FILE] [--json]",
				Description: backupHelp,
				Flags:       []cli.Flag{repoFlag, operatorFlag, witnessFlag, sheetFlag, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action:      withJob(func(r *job) error { return runCeremony(r, "prepare") }),
			},
			{
				Name:        "done",
				Usage:       "confirm a ceremony after the HSM was backed up: verify, then commit",
				UsageText:   "ods-keyguard backup done [-r REPO] [--backup-token NAME] [--operator NAME] [--witness NAME]... [--sheet FILE] [--json]",
				Description: backupHelp,
				Flags: []cli.Flag{repoFlag, operatorFlag, witnessFlag, sheetFlag, jsonFlag(), timeoutFlag(defaultTimeout),
					&cli.StringFlag{Name: "backup-token", Usage: "verify the backup on [backup_token.`NAME`] of the configuration"}},
				Action: withJob(func(r *job) error { return runCeremony(r, "done") }),
			},
			{
				Name:        "rollback",
				Usage:       "abandon an open ceremony and unflag the enforcer's Prepared keys",
				UsageText:   "ods-keyguard backup rollback [-r REPO] [--operator NAME] [--witness NAME]... [--reason TEXT] [--json]",
				Description: backupHelp,
				Flags: []cli.Flag{repoFlag, operatorFlag, witnessFlag, jsonFlag(), timeoutFlag(defaultTimeout),
					&cli.StringFlag{Name: "reason", Usage: "why, for the history"}},
				Action: withJob(func(r *job) error { return runCeremony(r, "rollback") }),
			},
			{
				Name:        "history",
				Usage:       "list confirmed and abandoned ceremonies, newest first",
				UsageText:   "ods-keyguard backup history [--json]",
				Description: backupHelp,
				Flags:       []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
				Action:      withJob(runHistory),
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
	if env != nil {
		env.Witnesses = c.StringSlice("witness")
	}
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
	seal := backup.SealOf(ctx, l)
	if c.Bool("json") {
		if jerr := writeJSON(c.App.Writer, backup.StepDoc(step, cs, text.String(), err, seal)); jerr != nil {
			return jerr
		}
	} else if len(cs) > 0 {
		backup.WriteSeal(c.App.Writer, seal)
	}
	if serr := writeSheets(r, cs, seal); serr != nil {
		return errors.Join(err, serr)
	}
	// A ceremony step refused (nothing committed) is a finding, not a
	// failure to act.
	if refused := (*backup.Refusal)(nil); errors.As(err, &refused) {
		return exit(exitProblems, err)
	}
	return err
}

// writeSheets writes the run sheet of each ceremony the step touched to
// --sheet FILE (FILE-REPO.ext when there are several).
func writeSheets(r *job, cs []*ledger.Ceremony, seal backup.Seal) error {
	file := r.c.String("sheet")
	if file == "" || len(cs) == 0 {
		return nil
	}
	ext := filepath.Ext(file)
	for _, cer := range cs {
		label := ""
		if repo, ok := r.cfg.ODS.Repository(cer.Repository); ok {
			label = repo.TokenLabel
		}
		data, err := backup.RunSheet(r.ctx, cer, label, seal, ext == ".pdf")
		if err != nil {
			return err
		}
		path := file
		if len(cs) > 1 {
			path = strings.TrimSuffix(file, ext) + "-" + cer.Repository + ext
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("run sheet: %w", err)
		}
		fmt.Fprintf(r.c.App.ErrWriter, "run sheet of ceremony %s: %s\n", cer.ID, path)
	}
	return nil
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
