package recovery

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sandbox.StopShared()
	os.Exit(code)
}

// backend is an enforcer database made from OpenDNSSEC's own schema, with
// three pool keys (ids 1-3) of repository "Soft'HSM".
type backend struct {
	ds    enforcer.Datastore
	exec  func(t *testing.T, sql string) // runs statements
	count func(t *testing.T, query string) int
}

const poolRows = `INSERT INTO hsmKey (id, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup) VALUES
	(1, 1, 'AA01', 1, 256, 13, 2, 1700000000, 0, 2, 'Soft''HSM', 1),
	(2, 1, 'aa02', 1, 256, 13, 2, 1700000000, 0, 2, 'Soft''HSM', 1),
	(3, 1, 'aa03', 1, 256, 13, 2, 1700000000, 0, 2, 'Soft''HSM', 1)`

const assignAA02 = `INSERT INTO keyData (zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke, standby, activeZsk, publish, activeKsk, dsAtParent, keytag, minimize)
	VALUES (1, 2, 13, 0, 2, 1, 0, 0, 0, 0, 0, 0, 1, 0)`

func sqliteBackend(t *testing.T) backend {
	const schema = "/usr/share/opendnssec/schema.sqlite"
	text, err := os.ReadFile(schema)
	if err != nil {
		sandbox.Missing(t, "needs OpenDNSSEC's schema: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kasp.db")
	open := func(t *testing.T) *sql.DB {
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	b := backend{ds: enforcer.Datastore{SQLite: path}}
	b.exec = func(t *testing.T, stmt string) {
		db := open(t)
		defer db.Close()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}
	b.count = func(t *testing.T, query string) int { return rows(t, path, query) }
	b.exec(t, string(text))
	b.exec(t, poolRows)
	return b
}

func mysqlBackend(t *testing.T) backend {
	db := sandbox.TestDatabase(t, "kasp")
	if err := db.LoadEnforcerSchema(); err != nil {
		t.Fatal(err)
	}
	b := backend{ds: enforcer.Datastore{MySQL: &enforcer.MySQL{Host: "127.0.0.1", Port: db.Server.Port, Database: db.Name,
		Username: db.User, Password: secret.Value(db.Password)}}}
	b.exec = func(t *testing.T, stmt string) {
		if out, err := db.Query(stmt); err != nil {
			t.Fatalf("%.60s: %v: %s", stmt, err, out)
		}
	}
	b.count = func(t *testing.T, query string) int {
		out, err := db.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(out)
		n, err := strconv.Atoi(fields[len(fields)-1])
		if err != nil {
			t.Fatalf("%s: %q", query, out)
		}
		return n
	}
	b.exec(t, poolRows)
	return b
}

func rows(t *testing.T, path, query string) int {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPruneApplySQLite(t *testing.T) { testPruneApply(t, sqliteBackend(t)) }
func TestPruneApplyMySQL(t *testing.T)  { testPruneApply(t, mysqlBackend(t)) }

// The rows to delete are read again in the transaction: one that was
// handed out since stops it all. Otherwise they go, after (for SQLite) a
// copy of the database, and an undo file that puts them back.
func testPruneApply(t *testing.T, b backend) {
	ds := b.ds
	st, err := enforcer.ReadDatastore(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	store, err := ledgertest.New(t).Ceremonies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// aa03 is on the HSM; aa01 and aa02 are not.
	p, err := PlanPrune(st, store, []Token{{Name: "a", Repository: "Soft'HSM", Keys: holding{"aa03": "f"}}}, ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Keys) != 2 || p.Keys[0].Locator != "aa01" || p.Statements[1] != "DELETE FROM hsmKey WHERE id = 2 AND lower(locator) = 'aa02' AND state = 1 AND id NOT IN (SELECT hsmKeyId FROM keyData);" {
		t.Fatalf("plan %+v", p)
	}
	// The enforcer hands aa02 out meanwhile.
	b.exec(t, assignAA02)
	dir, err := statedir.Open(t.TempDir(), false, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	now := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	err = p.Apply(context.Background(), ds, dir, now)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "hsmKey 2 (aa02): now assigned to a zone") {
		t.Fatalf("assigned meanwhile: %v", err)
	}
	if n := b.count(t, "SELECT count(*) FROM hsmKey"); n != 3 || p.Applied {
		t.Fatalf("%d rows left after a refused apply", n)
	}
	if left, _ := dir.List(""); len(left) != 0 || p.Undo != "" || p.Copy != "" {
		t.Fatalf("a refused apply left %v (undo %q, copy %q)", left, p.Undo, p.Copy)
	}
	// Unassigned again: both go.
	b.exec(t, "DELETE FROM keyData")
	p.Copy, p.Undo = "", ""
	if err := p.Apply(context.Background(), ds, dir, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, "SELECT count(*) FROM hsmKey"); n != 1 || !p.Applied {
		t.Fatalf("%d rows left", n)
	}
	if ds.MySQL == nil {
		if n := rows(t, p.Copy, "SELECT count(*) FROM hsmKey"); n != 3 {
			t.Fatalf("the copy has %d rows", n)
		}
	} else if p.Copy != "" {
		t.Fatalf("a copy of a MySQL database: %s", p.Copy)
	}
	undo, err := os.ReadFile(p.Undo)
	if err != nil {
		t.Fatal(err)
	}
	b.exec(t, string(undo))
	if n := b.count(t, "SELECT count(*) FROM hsmKey WHERE repository = 'Soft''HSM' AND state = 1 AND backup = 1"); n != 3 {
		t.Fatalf("after undo: %d rows", n)
	}
}

// A token that did not answer is not a token without the key: no plan.
func TestPruneUnreadToken(t *testing.T) {
	store, _ := ledgertest.New(t).Ceremonies(context.Background())
	st := &enforcer.State{Keys: []*enforcer.Key{{ID: 1, Locator: "aa", Repository: "R", State: enforcer.Unused}}}
	_, err := PlanPrune(st, store, []Token{{Name: "a", Kind: "repository", Repository: "R", Err: errors.New("login: CKR_PIN_INCORRECT")}}, enforcer.Datastore{})
	if err == nil || !strings.Contains(err.Error(), "cannot tell which keys are on no HSM") {
		t.Fatalf("got %v", err)
	}
}

// An ods-enforcerd running with this conf.xml, named relative to its own
// folder, is found; one with another conf.xml and another database is
// not; one whose conf.xml cannot be read is told apart by its open files
// (SQLite), or cannot be told about (MySQL); after it ends, nothing is.
func TestEnforcerRunning(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.xml")
	db := filepath.Join(dir, "kasp.db")
	for f, text := range map[string]string{conf: db, filepath.Join(dir, "other.xml"): filepath.Join(dir, "other.db"), db: "", filepath.Join(dir, "other.db"): ""} {
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	daemon := filepath.Join(dir, "ods-enforcerd")
	if err := os.WriteFile(daemon, []byte("#!/bin/sh\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := Target{Conf: conf, Socket: filepath.Join(dir, "no.sock"), Datastore: enforcer.Datastore{SQLite: db},
		ReadConf: func(path string) (enforcer.Datastore, error) {
			b, err := os.ReadFile(path)
			return enforcer.Datastore{SQLite: string(b)}, err
		}}
	if got, err := target.Running(); got != "" || err != nil {
		t.Fatalf("nothing runs yet: %q, %v", got, err)
	}
	start := func(confArg string) *exec.Cmd {
		cmd := exec.Command(daemon, "-c", confArg, "-d")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	stop := func(cmd *exec.Cmd) {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	cmd := start("other.xml")
	if got, err := target.Running(); got != "" || err != nil {
		t.Errorf("another conf.xml: %q, %v", got, err)
	}
	stop(cmd)
	cmd = start("missing.xml")
	// SQLite: its open files say it does not hold this database.
	if got, err := target.Running(); got != "" || err != nil {
		t.Errorf("a conf.xml that cannot be read, the database not open: %q, %v", got, err)
	}
	// MySQL: nothing else tells.
	my := target
	my.Datastore = enforcer.Datastore{MySQL: &enforcer.MySQL{Host: "127.0.0.1", Database: "kasp"}}
	if _, err := my.Running(); err == nil || !strings.Contains(err.Error(), "cannot be told") {
		t.Errorf("a conf.xml that cannot be read, MySQL: %v", err)
	}
	stop(cmd)
	cmd = start("conf.xml")
	defer stop(cmd)
	if got, err := target.Running(); !strings.Contains(got, "runs with "+conf) || err != nil {
		t.Errorf("this conf.xml: %q, %v", got, err)
	}
}
