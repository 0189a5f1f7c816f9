package main

// Script commands about the records and the database servers: ledgers aged
// on purpose, a Galera cluster.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// ageledger DIR DURATION: move every time in the ceremony files of state_dir
// DIR back by DURATION (ISO 8601), checksums recomputed: a ceremony held a
// week ago, without waiting a week. A fixture, as check_pool_gap's edit of
// kasp.db is; ods-keyguard itself never does this.
func cmdAgeLedger(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: ageledger STATEDIR DURATION")
	}
	d, err := human.ParseISODuration(args[1])
	ts.Check(err)
	for _, name := range []string{"history.json", "ceremonies-open.json"} {
		path := filepath.Join(ts.MkAbs(args[0]), name)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		ts.Check(err)
		var env struct {
			Format string          `json:"format"`
			SHA256 string          `json:"sha256"`
			Data   json.RawMessage `json:"data"`
		}
		ts.Check(json.Unmarshal(b, &env))
		var data any
		ts.Check(json.Unmarshal(env.Data, &data))
		data = shiftTimes(data, d)
		raw, err := json.Marshal(data)
		ts.Check(err)
		sum := sha256.Sum256(raw)
		env.Data, env.SHA256 = raw, hex.EncodeToString(sum[:])
		out, err := json.MarshalIndent(env, "", " ")
		ts.Check(err)
		ts.Check(os.WriteFile(path, append(out, '\n'), 0o640))
	}
}

// shiftTimes moves every RFC 3339 time in a decoded JSON value back by d.
func shiftTimes(v any, d time.Duration) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = shiftTimes(e, d)
		}
	case []any:
		for i, e := range x {
			x[i] = shiftTimes(e, d)
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil && !t.IsZero() && t.Year() > 1 {
			return t.Add(-d).Format(time.RFC3339Nano)
		}
	}
	return v
}

// galeraSlot holds a script's Galera cluster.
type galeraSlot struct{ g *sandbox.Galera }

// galera start: a 3-node MariaDB Galera cluster for this script, a ledger
// database on it (made on node 1, with ledger init), and $LEDGER_1,
// $LEDGER_2, $LEDGER_3: the [ledger] section of a host that writes to that
// node; $GALERA_SOCKET_N each node's socket (root).
// galera kill N: kill node N as a crash would, and wait until the others
// go on as a cluster without it.
func cmdGalera(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: galera start | galera kill N")
	}
	switch args[0] {
	case "start":
		dir, err := os.MkdirTemp("", "keyguard-galera")
		ts.Check(err)
		g, err := sandbox.StartGalera(dir, 3)
		if err != nil {
			os.RemoveAll(dir)
			ts.Fatalf("galera start: %v", err)
		}
		ts.Defer(func() { g.Stop(); os.RemoveAll(dir) })
		ts.Value("galera").(*galeraSlot).g = g
		db, err := g.Nodes[0].NewDatabase("keyguard")
		ts.Check(err)
		pw := ts.MkAbs("ledger.pw")
		ts.Check(os.WriteFile(pw, []byte(db.Password+"\n"), 0o600))
		srv := mysqlx.Server{Host: "127.0.0.1", Port: g.Nodes[0].Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		l, err := ledger.New(ctx, ledger.Options{MySQL: &srv, Create: true})
		ts.Check(err)
		err = l.Init(ctx)
		l.Close()
		ts.Check(err)
		for i, n := range g.Nodes {
			ts.Setenv(fmt.Sprintf("LEDGER_%d", i+1), fmt.Sprintf("[ledger]\nbackend = \"mysql\"\ndsn = %q\npassword_file = %q\n",
				fmt.Sprintf("%s@tcp(127.0.0.1:%d)/%s", db.User, n.Port, db.Name), pw))
			ts.Setenv(fmt.Sprintf("GALERA_SOCKET_%d", i+1), n.Socket)
		}
		ts.Setenv("LEDGER_DB", db.Name)
	case "kill":
		if len(args) != 2 {
			ts.Fatalf("usage: galera kill N")
		}
		g := ts.Value("galera").(*galeraSlot).g
		if g == nil {
			ts.Fatalf("galera kill: no cluster (galera start first)")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		ts.Check(g.Kill(n))
		ts.Check(g.WaitSize(len(g.Nodes)-1, 60*time.Second))
	default:
		ts.Fatalf("usage: galera start | galera kill N")
	}
}
