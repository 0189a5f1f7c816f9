package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
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
				Description: `Exit status: 0 ready; 3 could not (server, password, grants).
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{timeoutFlag(defaultTimeout)},
				Action: withJob(runLedgerInit),
			},
			{
				Name:      "status",
				Usage:     "where the records are, what the server is (single, replica, Galera node), what that guarantees",
				UsageText: "ods-keyguard ledger status [--json] [-t SECONDS]",
				Description: `Exit status: 0 reported (problems included); 3 could not reach the ledger.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{jsonFlag(), timeoutFlag(30 * time.Second)},
				Action: withJob(runLedgerStatus),
			},
			{
				Name:      "migrate",
				Usage:     "copy state_dir into the MySQL ledger, verified, and retire state_dir",
				UsageText: "ods-keyguard ledger migrate --to mysql [-t SECONDS]",
				Description: `Exit status: 0 migrated (or found migrated); 3 could not, nothing lost.
The manual: man ods-keyguard.`,
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
	o, err := r.cfg.LedgerOptions(c.App.ErrWriter, false)
	if err != nil {
		return err
	}
	o.Create = true // ledger init makes the tables; nothing else does
	l, err := ledger.New(r.ctx, o)
	if err != nil {
		return err
	}
	r.closes = append(r.closes, l.Close)
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

func runLedgerStatus(r *job) error {
	c := r.c
	o, err := r.cfg.LedgerOptions(c.App.ErrWriter, true)
	if err != nil {
		return err
	}
	o.Inspect = true
	l, err := ledger.New(r.ctx, o)
	if err != nil {
		return err
	}
	r.closes = append(r.closes, l.Close)
	st, err := l.Status(r.ctx)
	if err != nil {
		return err
	}
	return output(c, jsondoc.New("ledger-status", st), func(w io.Writer) error {
		st.WriteText(w)
		return nil
	})
}
