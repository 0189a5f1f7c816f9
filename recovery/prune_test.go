package recovery

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// enforcerDB makes an enforcer database from OpenDNSSEC's own schema with
// three pool keys (ids 1-3), and returns its path.
func enforcerDB(t *testing.T) string {
	const schema = "/usr/share/opendnssec/schema.sqlite"
	text, err := os.ReadFile(schema)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v, and CI does not skip", schema, err)
		}
		t.Skip("needs OpenDNSSEC's schema")
	}
	path := filepath.Join(t.TempDir(), "kasp.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(text)); err != nil {
		t.Fatalf("%s: %v", schema, err)
	}
	for i, loc := range []string{"AA01", "aa02", "aa03"} {
		if _, err := db.Exec(`INSERT INTO hsmKey (id, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup)
			VALUES (?, 1, ?, 1, 256, 13, 2, 1700000000, 0, 2, 'Soft''HSM', 1)`, i+1, loc); err != nil {
			t.Fatal(err)
		}
	}
	return path
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

// The rows to delete are read again in the transaction: one that was
// handed out since stops it all. Otherwise they go, after a copy of the
// database and an undo file that puts them back.
func TestPruneApply(t *testing.T) {
	path := enforcerDB(t)
	ds := enforcer.Datastore{SQLite: path}
	st, err := enforcer.ReadDatastore(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Memory().Ceremonies(context.Background())
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
	db, _ := sql.Open("sqlite", "file:"+path)
	if _, err := db.Exec(`INSERT INTO keyData (zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke, standby, activeZsk, publish, activeKsk, dsAtParent, keytag, minimize)
		VALUES (1, 2, 13, 0, 2, 1, 0, 0, 0, 0, 0, 0, 1, 0)`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	err = p.Apply(context.Background(), ds, dir, now)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "hsmKey 2 (aa02): now assigned to a zone") {
		t.Fatalf("assigned meanwhile: %v", err)
	}
	if n := rows(t, path, "SELECT count(*) FROM hsmKey"); n != 3 || p.Applied {
		t.Fatalf("%d rows left after a refused apply", n)
	}
	// Unassigned again: both go.
	db.Exec(`DELETE FROM keyData`)
	db.Close()
	p.Copy, p.Undo = "", ""
	if err := p.Apply(context.Background(), ds, dir, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := rows(t, path, "SELECT count(*) FROM hsmKey"); n != 1 || !p.Applied {
		t.Fatalf("%d rows left", n)
	}
	if n := rows(t, p.Copy, "SELECT count(*) FROM hsmKey"); n != 3 {
		t.Fatalf("the copy has %d rows", n)
	}
	undo, err := os.ReadFile(p.Undo)
	if err != nil {
		t.Fatal(err)
	}
	db, _ = sql.Open("sqlite", "file:"+path)
	defer db.Close()
	if _, err := db.Exec(string(undo)); err != nil {
		t.Fatalf("undo: %v\n%s", err, undo)
	}
	if n := rows(t, path, "SELECT count(*) FROM hsmKey WHERE repository = 'Soft''HSM' AND state = 1 AND backup = 1"); n != 3 {
		t.Fatalf("after undo: %d rows", n)
	}
}

// A token that did not answer is not a token without the key: no plan.
func TestPruneUnreadToken(t *testing.T) {
	store, _ := ledger.Memory().Ceremonies(context.Background())
	st := &enforcer.State{Keys: []*enforcer.Key{{ID: 1, Locator: "aa", Repository: "R", State: enforcer.Unused}}}
	_, err := PlanPrune(st, store, []Token{{Name: "a", Kind: "repository", Repository: "R", Err: errors.New("login: CKR_PIN_INCORRECT")}}, enforcer.Datastore{})
	if err == nil || !strings.Contains(err.Error(), "cannot tell which keys are on no HSM") {
		t.Fatalf("got %v", err)
	}
}

// An ods-enforcerd running with this conf.xml, named relative to its own
// folder, is found; one with another conf.xml is not; after it ends,
// nothing is.
func TestEnforcerRunning(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.xml")
	other := filepath.Join(dir, "other.xml")
	for _, f := range []string{conf, other} {
		if err := os.WriteFile(f, []byte("<Configuration/>"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	daemon := filepath.Join(dir, "ods-enforcerd")
	if err := os.WriteFile(daemon, []byte("#!/bin/sh\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := EnforcerRunning(filepath.Join(dir, "no.sock"), conf); got != "" {
		t.Fatalf("nothing runs yet: %q", got)
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
	if got := EnforcerRunning("", conf); got != "" {
		t.Errorf("another conf.xml: %q", got)
	}
	stop(cmd)
	cmd = start("conf.xml")
	defer stop(cmd)
	if got := EnforcerRunning("", conf); !strings.Contains(got, "runs with "+conf) {
		t.Errorf("this conf.xml: %q", got)
	}
}
