package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// ledgeredit OP ARGS: change the records by hand, as someone who can write
// state_dir (or the ledger's tables) would, on the script's backend:
//
//	ledgeredit change SEQ OLD NEW   replace OLD by NEW in log entry SEQ
//	ledgeredit remove SEQ           remove log entry SEQ
//	ledgeredit swap SEQ SEQ         swap two log entries
//	ledgeredit append               add an entry after the last, by hand
//	ledgeredit history STATUS       set the first ended ceremony's status,
//	                                its checksum recomputed
//	ledgeredit foreign              replace the newest checkpoint with one
//	                                of the same log signed by another key
//	ledgeredit save | restore       keep the records as they are, and put
//	                                them back: one edit at a time
func cmdLedgerEdit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: ledgeredit change|remove|swap|append|history|foreign ...")
	}
	seq := func(i int) uint64 {
		n, err := strconv.ParseUint(args[i], 10, 64)
		ts.Check(err)
		return n
	}
	if ts.Getenv("BACKEND") == "mysql" {
		editMySQL(ts, args, seq)
		return
	}
	state := ts.MkAbs("state")
	switch args[0] {
	case "save", "restore":
		from, to := state, ts.MkAbs("state.saved")
		if args[0] == "restore" {
			from, to = to, from
		}
		ts.Check(os.RemoveAll(to))
		if out, err := osexec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
			ts.Fatalf("ledgeredit %s: %v: %s", args[0], err, out)
		}
		return
	case "history":
		editEnvelope(ts, filepath.Join(state, "history.json"), args[1])
		return
	case "foreign":
		s, _ := foreignCheckpoint(ts, ledger.Options{Dir: state, Group: -1})
		ts.Check(os.WriteFile(filepath.Join(state, "log", "checkpoints", fmt.Sprintf("%020d.note", s.Size)), []byte(s.Note), 0o640))
		return
	}
	segs, err := filepath.Glob(filepath.Join(state, "log", "*.log"))
	ts.Check(err)
	var lines []string
	for _, s := range segs {
		lines = append(lines, strings.Split(strings.TrimRight(ts.ReadFile(s), "\n"), "\n")...)
	}
	at := func(n uint64) int {
		for i, l := range lines {
			if strings.Contains(l, fmt.Sprintf(`"entry":{"seq":%d,`, n)) {
				return i
			}
		}
		ts.Fatalf("ledgeredit: no entry %d", n)
		return 0
	}
	switch args[0] {
	case "change":
		i := at(seq(1))
		if !strings.Contains(lines[i], args[2]) {
			ts.Fatalf("ledgeredit: entry %s has no %q", args[1], args[2])
		}
		lines[i] = strings.Replace(lines[i], args[2], args[3], 1)
	case "remove":
		i := at(seq(1))
		lines = append(lines[:i], lines[i+1:]...)
	case "swap":
		i, j := at(seq(1)), at(seq(2))
		lines[i], lines[j] = lines[j], lines[i]
	case "append":
		var s ledger.Stored
		ts.Check(json.Unmarshal([]byte(lines[len(lines)-1]), &s))
		lines = append(lines, string(handAppended(ts, s)))
	default:
		ts.Fatalf("usage: ledgeredit change|remove|swap|append|history|foreign ...")
	}
	// One segment of them all: the log reads it as it would its own.
	for _, s := range segs {
		ts.Check(os.Remove(s))
	}
	ts.Check(os.WriteFile(filepath.Join(state, "log", fmt.Sprintf("%020d.log", 1)), []byte(strings.Join(lines, "\n")+"\n"), 0o640))
}

// handAppended is an entry after s, made by hand: its number and link
// right, its hash not computed by ods-keyguard.
func handAppended(ts *testscript.TestScript, s ledger.Stored) []byte {
	var e ledger.Entry
	ts.Check(json.Unmarshal(s.Body, &e))
	e.Seq++
	e.Payload = json.RawMessage(`{"note":"added by hand"}`)
	body, err := json.Marshal(e)
	ts.Check(err)
	out, err := json.Marshal(ledger.Stored{Prev: s.Hash, Hash: s.Hash, Body: body})
	ts.Check(err)
	return out
}

// editEnvelope sets the first ended ceremony's status in a state file,
// its checksum recomputed, as ageledger moves times.
func editEnvelope(ts *testscript.TestScript, path, status string) {
	var env struct {
		Format string          `json:"format"`
		SHA256 string          `json:"sha256"`
		Data   json.RawMessage `json:"data"`
	}
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(path)), &env))
	var list []map[string]any
	ts.Check(json.Unmarshal(env.Data, &list))
	list[0]["status"] = status
	raw, err := json.Marshal(list)
	ts.Check(err)
	sum := sha256.Sum256(raw)
	env.Data, env.SHA256 = raw, hex.EncodeToString(sum[:])
	out, err := json.MarshalIndent(env, "", " ")
	ts.Check(err)
	ts.Check(os.WriteFile(path, append(out, '\n'), 0o640))
}

// foreignCheckpoint signs the log's head as it is with a key of its own.
func foreignCheckpoint(ts *testscript.TestScript, o ledger.Options) (ledger.Checkpoint, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ledger.New(ctx, o)
	ts.Check(err)
	defer l.Close()
	rep, err := l.Verify(ctx)
	ts.Check(err)
	h, err := ledger.ParseHash(rep.Head)
	ts.Check(err)
	skey, _, err := note.GenerateKey(nil, "mallory")
	ts.Check(err)
	signer, err := note.NewSigner(skey)
	ts.Check(err)
	text := fmt.Sprintf("%s\n%d\n%s\n", rep.Origin, rep.Entries, base64.StdEncoding.EncodeToString(h[:]))
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	ts.Check(err)
	return ledger.Checkpoint{Origin: rep.Origin, Size: rep.Entries, Hash: h, Note: string(signed)}, text
}

func editMySQL(ts *testscript.TestScript, args []string, seq func(int) uint64) {
	srv, err := mysqlx.ParseDSN(ts.Getenv("LEDGER_DSN"))
	ts.Check(err)
	srv.Password = secret.Value(strings.TrimSpace(ts.ReadFile("ledger.pw")))
	db, err := mysqlx.Open(srv)
	ts.Check(err)
	defer db.Close()
	exec := func(q string, a ...any) sql.Result {
		res, err := db.Exec(q, a...)
		ts.Check(err)
		return res
	}
	tables := []string{"keyguard_log", "keyguard_history", "keyguard_checkpoint", "keyguard_open", "keyguard_ds_event"}
	switch args[0] {
	case "save":
		for _, t := range tables {
			exec(`DROP TABLE IF EXISTS saved_` + t)
			exec(`CREATE TABLE saved_` + t + ` AS SELECT * FROM ` + t)
		}
	case "restore":
		for _, t := range tables {
			exec(`DELETE FROM ` + t)
			exec(`INSERT INTO ` + t + ` SELECT * FROM saved_` + t)
		}
	case "change":
		if n, _ := exec(`UPDATE keyguard_log SET entry = REPLACE(entry, ?, ?) WHERE seq = ?`, args[2], args[3], seq(1)).RowsAffected(); n != 1 {
			ts.Fatalf("ledgeredit: entry %s has no %q", args[1], args[2])
		}
	case "remove":
		exec(`DELETE FROM keyguard_log WHERE seq = ?`, seq(1))
	case "swap":
		exec(`UPDATE keyguard_log SET seq = 999999999 WHERE seq = ?`, seq(1))
		exec(`UPDATE keyguard_log SET seq = ? WHERE seq = ?`, seq(1), seq(2))
		exec(`UPDATE keyguard_log SET seq = ? WHERE seq = 999999999`, seq(2))
	case "append":
		var s ledger.Stored
		var body string
		ts.Check(db.QueryRow(`SELECT prev, hash, entry FROM keyguard_log ORDER BY seq DESC LIMIT 1`).Scan(&s.Prev, &s.Hash, &body))
		s.Body = []byte(body)
		var added ledger.Stored
		ts.Check(json.Unmarshal(handAppended(ts, s), &added))
		var e ledger.Entry
		ts.Check(json.Unmarshal(added.Body, &e))
		exec(`INSERT INTO keyguard_log (seq, prev, hash, entry) VALUES (?, ?, ?, ?)`, e.Seq, added.Prev, added.Hash, string(added.Body))
	case "history":
		exec(`UPDATE keyguard_history SET doc = REPLACE(doc, '"status":"confirmed"', ?) ORDER BY seq LIMIT 1`, `"status":"`+args[1]+`"`)
		exec(`UPDATE keyguard_history SET sha256 = SHA2(doc, 256)`)
	case "foreign":
		cp, _ := foreignCheckpoint(ts, ledger.Options{MySQL: &srv})
		exec(`REPLACE INTO keyguard_checkpoint (size, note, host, made) VALUES (?, ?, 'mallory', UTC_TIMESTAMP(6))`, cp.Size, cp.Note)
	default:
		ts.Fatalf("usage: ledgeredit change|remove|swap|append|history|foreign ...")
	}
}
