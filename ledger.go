package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
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
				Name:      "verify",
				Usage:     "check the log's chain, its signed checkpoints, and the records against the log",
				UsageText: "ods-keyguard ledger verify [--archive FILE]... [--json] [-t SECONDS]",
				Description: `Reads the whole log: every entry must carry the number after the one
before it, name that entry's hash, and hash to its own; every checkpoint
must be signed by a key of [ledger] public_keys (default signing_key.pub)
and sign the hash the log has at its size; and every record (the history,
the open ceremonies, the DS records) must be what the log recorded, and
everything the log recorded must be there (DS records compaction dropped
excepted: the log says which). Names the first entry that does not match.
Entries after the newest checkpoint are listed as not signed yet. A log
that ledger archive cut begins after the cut; --archive FILE reads the
archive files first, to check it from entry 1.
Exit status: 0 all matches; 1 something does not match (MISMATCH lines,
the first one first); 3 cannot tell (no public key for the checkpoints,
an empty log, the ledger unreadable).`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "archive", Usage: "an archive `FILE` of ledger archive (repeat for several)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: withJob(runLedgerVerify),
			},
			{
				Name:      "archive",
				Usage:     "move the log's old entries into an archive file, keeping the live log bounded",
				UsageText: "ods-keyguard ledger archive --before TIME --out FILE [-t SECONDS]",
				Description: `Verifies the log, writes the entries written before TIME (on state_dir,
whole segments of 1024 entries, never the newest) to FILE, new, then
records an entry that names FILE, its SHA-256, the cut and every
ceremony and DS record's checksum, and drops the archived entries from the
live log. Keep FILE: ledger verify --archive FILE checks the log from its
first entry again. TIME: RFC 3339, YYYY-MM-DD[THH:MM], or a duration back
from now (P400D). Exit status: 0 archived, or nothing to archive; 1 the
log does not verify (nothing archived); 2 bad usage; 3 could not.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "before", Usage: "archive the entries written before `TIME`"},
					&cli.StringFlag{Name: "out", Usage: "the archive `FILE` to write (never over a file)"},
					timeoutFlag(defaultTimeout),
				},
				Action: withJob(runLedgerArchive),
			},
			{
				Name:      "checkpoint",
				Usage:     "sign a checkpoint of the log as it is now",
				UsageText: "ods-keyguard ledger checkpoint [-t SECONDS]",
				Description: `Signs the log's size and head hash with [ledger] signing_key and stores
the checkpoint; prints it, and its short form. Every ceremony step signs
one by itself; run this from cron so that the hooks' records are signed
too. Exit status: 0 signed; 3 could not (no key, the log does not verify
since the last checkpoint).`,
				Flags:  []cli.Flag{timeoutFlag(defaultTimeout)},
				Action: withJob(runLedgerCheckpoint),
			},
			{
				Name:      "keygen",
				Usage:     "make the Ed25519 key pair that signs the log's checkpoints",
				UsageText: "ods-keyguard ledger keygen --name NAME --out FILE | --hsm --out FILE.pub",
				Description: `Writes the private key to FILE (0600; never over an existing file) and
the public key to FILE.pub, in the signed note format (C2SP signed-note:
NAME+HASH+KEY). Set [ledger] signing_key = FILE; give FILE.pub to the
auditors. Needs no configuration. With --hsm, makes the key pair of
[ledger.signing_hsm] on its token instead (CKM_EC_EDWARDS_KEY_PAIR_GEN;
the private key sensitive, never extractable) and writes its public key to
--out. Exit status: 0 made; 3 could not.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "the key's `NAME` in signatures (no spaces, no +), e.g. the host"},
					&cli.StringFlag{Name: "out", Usage: "the private key `FILE` (with --hsm: the public key's)"},
					&cli.BoolFlag{Name: "hsm", Usage: "make the key on the token of [ledger.signing_hsm]"},
				},
				Action: runLedgerKeygen,
			},
			{
				Name:      "export",
				Usage:     "one ceremony's entries, a signed checkpoint and the proof, for an auditor to verify offline",
				UsageText: "ods-keyguard ledger export --ceremony ID [--archive FILE]... [--out FILE] [-t SECONDS]",
				Description: `Writes a JSON document (schema ledger-export): the ceremony's entries in
the log, the newest signed checkpoint that covers them (one is signed when
none does), the hash of the entry before the first, and the leaf hash of
every other entry up to the checkpoint. ods-keyguard ledger verify-export
checks it with the public key alone. Exit status: 0 written; 3 could not.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ceremony", Usage: "the ceremony's `ID` (backup history lists them)"},
					&cli.StringSliceFlag{Name: "archive", Usage: "an archive `FILE` that holds the ceremony's entries (repeat for several)"},
					&cli.StringFlag{Name: "out", Usage: "write to `FILE` (default: standard output)"},
					timeoutFlag(defaultTimeout),
				},
				Action: withJob(runLedgerExport),
			},
			{
				Name:      "verify-export",
				Usage:     "check an export with the public key alone, on any machine",
				UsageText: "ods-keyguard ledger verify-export --key FILE.pub EXPORT",
				Description: `Checks the checkpoint's signature with the public key, and that the
ceremony's entries chain, through the proof, to the hash it signed; then
prints the ceremony: its steps, who ran them and who witnessed them, the
tokens by serial, the keys, the backup token, what was checked. Needs no
configuration and no ledger. Exit status: 0 verified; 1 it does not
verify; 2 bad usage; 3 the export or the key could not be read.`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "key", Usage: "a public key `FILE` of ledger keygen (repeat for several)"},
				},
				Action: runLedgerVerifyExport,
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

func runLedgerVerify(r *job) error {
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	rep, err := l.Verify(r.ctx, r.c.StringSlice("archive")...)
	if err != nil {
		return err
	}
	doc := struct {
		Schema string `json:"schema"`
		Status int    `json:"status"`
		*ledger.VerifyReport
	}{"ods-keyguard/ledger-verify/1", rep.Status(), rep}
	if err := output(r.c, doc, func(w io.Writer) error { rep.WriteText(w); return nil }); err != nil {
		return err
	}
	if st := rep.Status(); st != 0 {
		return exit(st, nil)
	}
	return nil
}

func runLedgerArchive(r *job) error {
	c := r.c
	if c.String("before") == "" || c.String("out") == "" {
		return usagef("ledger archive: --before TIME and --out FILE are needed")
	}
	before, err := human.ParseBefore(c.String("before"), time.Now())
	if err != nil {
		return usagef("ledger archive: --before %v", err)
	}
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	rep, err := l.Archive(r.ctx, before, c.String("out"))
	var nv *ledger.NotVerifiedError
	if errors.As(err, &nv) {
		return exit(1, err)
	}
	if err != nil {
		return err
	}
	rep.WriteText(c.App.Writer)
	return nil
}

func runLedgerCheckpoint(r *job) error {
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	cp, err := l.Checkpoint(r.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.c.App.Writer, "ledger checkpoint: %s\n%s", cp.Short(), cp.Note)
	return nil
}

func runLedgerKeygen(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if c.Bool("hsm") {
		return keygenOnToken(c)
	}
	if c.String("name") == "" || c.String("out") == "" {
		return usagef("ledger keygen: --name and --out are needed")
	}
	vkey, err := ledger.NewKeyPair(c.String("out"), c.String("name"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "ledger keygen: private key %s (0600), public key %s.pub:\n%s\n", c.String("out"), c.String("out"), vkey)
	return nil
}

func runLedgerExport(r *job) error {
	c := r.c
	if c.String("ceremony") == "" {
		return usagef("ledger export: --ceremony ID is needed")
	}
	l, err := r.ledger(false)
	if err != nil {
		return err
	}
	x, err := l.Export(r.ctx, c.String("ceremony"), c.StringSlice("archive")...)
	if err != nil {
		return err
	}
	if c.String("out") == "" {
		return writeJSON(c.App.Writer, x)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, x); err != nil {
		return err
	}
	if err := os.WriteFile(c.String("out"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "ledger export: ceremony %s written to %s\n", c.String("ceremony"), c.String("out"))
	return nil
}

func runLedgerVerifyExport(c *cli.Context) error {
	if c.NArg() != 1 || len(c.StringSlice("key")) == 0 {
		return usagef("ledger verify-export: --key FILE.pub and one export file, please")
	}
	var keys []string
	for _, f := range c.StringSlice("key") {
		k, err := config.ReadPublicKey(f)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	f, err := os.Open(c.Args().First())
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := ledger.VerifyExport(f, keys)
	if err != nil {
		return exit(exitProblems, fmt.Errorf("verify-export %s: %w", c.Args().First(), err))
	}
	rep.WriteText(c.App.Writer)
	return nil
}

// keygenOnToken makes the key pair of [ledger.signing_hsm] on its token,
// and writes its public key to --out.
func keygenOnToken(c *cli.Context) error {
	if c.String("out") == "" {
		return usagef("ledger keygen --hsm: --out FILE.pub is needed")
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	k, name, err := cfg.SigningKeyOnToken()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	pub, err := k.Generate(ctx)
	if err != nil {
		return err
	}
	vkey, err := ledger.WritePublicKey(c.String("out"), name, pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "ledger keygen: key %q made on %s (token %q), public key %s:\n%s\n", k.Label, k.Token.Describe(), k.Token.Label, c.String("out"), vkey)
	return nil
}
