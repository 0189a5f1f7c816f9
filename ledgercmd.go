package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

func ledgerCommand() *cli.Command {
	return &cli.Command{
		Name:  "ledger",
		Usage: "where ods-keyguard keeps its records: state_dir, or a MySQL database shared by an enforcer pair",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "make the tables of the MySQL ledger ([ledger] backend = \"mysql\")",
				UsageText: "ods-keyguard ledger init [-t SECONDS]",
				Description: `Makes ods-keyguard's tables in the database of [ledger] dsn, if they are
not there yet; any command that writes does so too, a reader (check) does
not. Nothing to do for backend = "files".
Exit status: 0 ready; 3 could not (server, password, grants).`,
				Flags:  []cli.Flag{timeoutFlag(defaultTimeout)},
				Action: withJob(runLedgerInit),
			},
			{
				Name:      "migrate",
				Usage:     "copy state_dir into the MySQL ledger, verified, and retire state_dir",
				UsageText: "ods-keyguard ledger migrate --to mysql [-t SECONDS]",
				Description: `Copies every record of state_dir (open ceremonies, the history, the DS
records and what the hooks spooled) into the empty database of [ledger]
dsn, under both locks and in one transaction, then reads every record
back and compares it. state_dir is then marked as migrated: from then on
backend = "files" refuses it, so no host writes records the others cannot
see. Set [ledger] backend = "mysql" on every host of the pair. Run again
after a crash, it copies nothing twice.
Exit status: 0 migrated (or found migrated); 3 could not, nothing lost.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "to", Usage: "the backend to move to: `mysql`"},
					timeoutFlag(defaultTimeout),
				},
				Action: withJob(runLedgerMigrate),
			},
		},
	}
}

func runLedgerInit(r *job) error {
	c := r.c
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	if err := l.Init(r.ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "ledger %s: ready\n", l.Where())
	return nil
}

func runLedgerMigrate(r *job) error {
	c, cfg, ctx := r.c, r.cfg, r.ctx
	if c.String("to") != config.LedgerMySQL {
		return usagef("ledger migrate: --to mysql is the one target")
	}
	srv, err := cfg.LedgerServer()
	if err != nil {
		return err
	}
	if srv == nil {
		return exit(exitUnknown, errors.New(`ledger migrate: [ledger] names no database: set dsn and password_file (backend may stay "files" until the migration is done)`))
	}
	o, err := cfg.LedgerOptions(c.App.ErrWriter, false)
	if err != nil {
		return err
	}
	rep, err := ledger.MigrateTo(ctx, o, srv)
	if err != nil {
		return err
	}
	rep.WriteText(c.App.Writer)
	return nil
}
