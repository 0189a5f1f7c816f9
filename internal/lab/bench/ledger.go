package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// benchLedger times ods-keyguard ledger verify over a log of n entries,
// in state_dir and in MySQL (MariaDB), each beside a reference that reads
// the same bytes: sha256sum of the segment files, and the mariadb client
// selecting every row.
func benchLedger(bin string, n, runs int) (string, error) {
	dir, err := os.MkdirTemp("", "ods-keyguard-bench-ledger-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	key := filepath.Join(dir, "ledger.key")
	if _, err := ledger.NewKeyPair(key, "bench"); err != nil {
		return "", err
	}
	skey, err := os.ReadFile(key)
	if err != nil {
		return "", err
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "conf.xml")
	if err := os.WriteFile(conf, []byte(`<Configuration><RepositoryList><Repository name="SoftHSM"><Module>/usr/lib/softhsm/libsofthsm2.so</Module><TokenLabel>ods-a</TokenLabel><PIN>1234</PIN></Repository></RepositoryList><Enforcer><Datastore><SQLite>`+dir+`/kasp.db</SQLite></Datastore></Enforcer></Configuration>`), 0o600); err != nil {
		return "", err
	}
	var out strings.Builder
	fmt.Fprintf(&out, "| backend | command | runs | median wall | peak RSS | vs reference |\n|---|---|---|---|---|---|\n")
	// state_dir.
	state := filepath.Join(dir, "state")
	took, err := fill(ledger.Options{Dir: state, Group: -1}, signer, n)
	if err != nil {
		return "", err
	}
	toml := filepath.Join(dir, "files.toml")
	os.WriteFile(toml, []byte(fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n[ledger]\nsigning_key = %q\n", conf, state, key)), 0o600)
	segs, _ := filepath.Glob(filepath.Join(state, "log", "*.log"))
	rows, err := rowsOf("files (state_dir)", runs,
		append([]string{"sha256sum"}, segs...), "sha256sum of the segment files",
		[]string{bin, "--config", toml, "ledger", "verify"})
	if err != nil {
		return "", err
	}
	out.WriteString(rows)
	fillNote := fmt.Sprintf("state_dir filled in %s", took.Round(time.Millisecond))
	// MySQL.
	srv, err := sandbox.SharedMariaDB()
	if err != nil {
		return "", err
	}
	defer sandbox.StopShared()
	db, err := srv.NewDatabase("keyguard")
	if err != nil {
		return "", err
	}
	defer db.Drop()
	ms := mysqlx.Server{Host: "127.0.0.1", Port: srv.Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	init, err := ledger.New(ctx, ledger.Options{MySQL: &ms, Create: true})
	if err != nil {
		return "", err
	}
	init.Close()
	if took, err = fill(ledger.Options{MySQL: &ms}, signer, n); err != nil {
		return "", err
	}
	pw := filepath.Join(dir, "ledger.pw")
	os.WriteFile(pw, []byte(db.Password+"\n"), 0o600)
	mtoml := filepath.Join(dir, "mysql.toml")
	os.WriteFile(mtoml, []byte(fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n[ledger]\nbackend = \"mysql\"\ndsn = %q\npassword_file = %q\nsigning_key = %q\n",
		conf, state, db.DSN(), pw, key)), 0o600)
	rows, err = rowsOf("mysql (MariaDB "+mariadbVersion()+")", runs,
		[]string{"mariadb", "--no-defaults", "--socket=" + srv.Socket, "--user=root", db.Name, "-e", "SELECT seq, prev, hash, entry FROM keyguard_log ORDER BY seq"}, "mariadb: every row of keyguard_log",
		[]string{bin, "--config", mtoml, "ledger", "verify"})
	if err != nil {
		return "", err
	}
	out.WriteString(rows)
	return fmt.Sprintf("%d entries of about 300 bytes each, a signed checkpoint every 5,000 (%s; MySQL in %s).\n\n%s",
		n, fillNote, took.Round(time.Millisecond), out.String()), nil
}

// fill appends n entries in batches, as a busy gate would, a checkpoint
// after each batch.
func fill(o ledger.Options, signer note.Signer, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	o.Signer = func(context.Context) (note.Signer, error) { return signer, nil }
	l, err := ledger.New(ctx, o)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	start := time.Now()
	for done := 1; done < n; { // the log's first entry is one
		batch := min(5000, n-done)
		ps := make([]any, batch)
		for i := range ps {
			ps[i] = map[string]any{"decision": "published", "zone": fmt.Sprintf("zone%06d.example", done+i), "serial": 2026120700 + i,
				"keys": []string{"2f1c9a0e5b7d4c3a8e6f1d2c3b4a5968", "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"}, "reasons": []string{"every key backed up at ceremony 20261207T120000Z-SoftHSM-abcdef"}}
		}
		if err := l.AppendAll(ctx, "published", ps); err != nil {
			return 0, err
		}
		done += batch
	}
	return time.Since(start), nil
}

// rowsOf measures the reference and the command, runs times each.
func rowsOf(backend string, runs int, ref []string, refName string, cmd []string) (string, error) {
	var b strings.Builder
	var refWall time.Duration
	for i, argv := range [][]string{ref, cmd} {
		var walls []time.Duration
		var rss []int64
		for r := 0; r < runs; r++ {
			w, m, err := measure(argv, "", 10*time.Minute)
			if err != nil {
				return "", fmt.Errorf("%s: %w", strings.Join(argv[:min(len(argv), 4)], " "), err)
			}
			walls, rss = append(walls, w), append(rss, m)
		}
		name, vs := "`"+strings.Join(argv[len(argv)-2:], " ")+"`", "reference"
		if i == 0 {
			name, refWall = refName, median(walls)
		} else {
			name = "`ods-keyguard ledger verify`"
			vs = fmt.Sprintf("%.2fx", float64(median(walls))/float64(refWall))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.1f MiB | %s |\n", backend, name, runs, median(walls).Round(time.Millisecond), float64(median(rss))/1024, vs)
	}
	return b.String(), nil
}

func writeLedger(path, binary, table string) error {
	const header = "## ledger verify: the log, its checkpoints, the records\n\nRun %s, `make bench-ledger`, %s.\nMedian of the runs; peak RSS is the process's maximum resident set. Each run reads the whole log, hashes every entry twice (its leaf and its link), verifies every checkpoint's Ed25519 signature, and compares the records with the log.\n\n"
	return writeSection(path, "ledger", fmt.Sprintf(header, machine(), version(binary))+table+"\n")
}
