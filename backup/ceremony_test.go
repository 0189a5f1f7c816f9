package backup

import (
	"errors"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// Unit tests of the ceremony's steps on data; the steps with the real
// enforcer and SoftHSMv2 are the backup_*.txtar scripts.

func key(id int64, loc string, role enforcer.Role, b enforcer.BackupState) *enforcer.Key {
	return &enforcer.Key{ID: id, Locator: loc, Repository: "R", Role: role, State: enforcer.Unused, Backup: b, Algorithm: 13, Bits: 256}
}

func cov(locs ...string) ledger.Coverage {
	c := &ledger.Ceremony{ID: "old", Repository: "R", Status: ledger.Confirmed, BackupToken: &ledger.TokenRecord{Name: "vault1"}}
	out := ledger.Coverage{}
	for _, l := range locs {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: l, Role: "ZSK", Type: "EC P-256", Fingerprint: "f-" + l})
		out["R/"+l] = c
	}
	return out
}

func locs(keys []*enforcer.Key) string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Locator)
	}
	return strings.Join(out, ",")
}

func TestManifest(t *testing.T) {
	st := &enforcer.State{Keys: []*enforcer.Key{
		key(1, "prep", enforcer.ZSK, enforcer.BackupPrepared),        // flagged: always
		key(2, "byhand", enforcer.ZSK, enforcer.BackupDone),          // committed by hand, never verified
		key(3, "imported", enforcer.KSK, enforcer.BackupNotRequired), // Not Required, no ceremony
		key(4, "covered", enforcer.ZSK, enforcer.BackupDone),         // a ceremony has it
		key(5, "late", enforcer.ZSK, enforcer.BackupRequired),        // made after the enforcer's prepare
		{ID: 6, Locator: "gone", Repository: "R", State: enforcer.Delete},
	}}
	keys, scheduled := manifest(st, cov("covered"), "R")
	if got := locs(keys); got != "prep,byhand,imported" || scheduled {
		t.Errorf("manifest %s (scheduled %v)", got, scheduled)
	}
	// Nothing new: a scheduled backup of every needed key.
	st.Keys = []*enforcer.Key{key(4, "covered", enforcer.ZSK, enforcer.BackupDone), key(7, "also", enforcer.KSK, enforcer.BackupNotRequired)}
	keys, scheduled = manifest(st, cov("covered", "also"), "R")
	if got := locs(keys); got != "covered,also" || !scheduled {
		t.Errorf("scheduled manifest %s (%v)", got, scheduled)
	}
}

func ceremonyOf(locs ...string) *ledger.Ceremony {
	c := &ledger.Ceremony{ID: "c", Repository: "R", RequireBackup: true}
	for _, l := range locs {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: l, Role: "ZSK", EnforcerBackup: "Prepared", Type: "EC P-256", Fingerprint: "f-" + l})
	}
	return c
}

func TestAlreadyCommitted(t *testing.T) {
	c := ceremonyOf("a", "b")
	st := &enforcer.State{Keys: []*enforcer.Key{key(1, "a", enforcer.ZSK, enforcer.BackupDone), key(2, "b", enforcer.ZSK, enforcer.BackupDone)}}
	if alreadyCommitted(st, c) {
		t.Error("an open ceremony counted as committed")
	}
	c.Status = ledger.Committing
	if !alreadyCommitted(st, c) {
		t.Error("committing with every key Done: not seen as committed")
	}
	st.Keys[1].Backup = enforcer.BackupPrepared
	if alreadyCommitted(st, c) {
		t.Error("a key still Prepared: seen as committed")
	}
}

func TestPreparedSet(t *testing.T) {
	c := ceremonyOf("a", "b")
	st := &enforcer.State{Keys: []*enforcer.Key{key(1, "a", enforcer.ZSK, enforcer.BackupPrepared), key(2, "b", enforcer.ZSK, enforcer.BackupPrepared)}}
	var checks []string
	if p := preparedSet(st, c, &checks); len(p) != 0 || len(checks) != 1 {
		t.Errorf("same set: %v %v", p, checks)
	}
	st.Keys = append(st.Keys, key(3, "x", enforcer.ZSK, enforcer.BackupPrepared))
	st.Keys[1].Backup = enforcer.BackupRequired
	p := preparedSet(st, c, &checks)
	if len(p) != 2 || !strings.Contains(p[0], "not in the manifest (backup prepare run by hand?): [x]") || !strings.Contains(p[1], "no longer Prepared") {
		t.Errorf("changed set: %v", p)
	}
}

// The backup token must hold every key still needed; an older key it lacks
// is a warning naming where that key's backup is.
func TestOlderKeysOnTheBackupToken(t *testing.T) {
	ctx := t.Context()
	store, err := ledgertest.New(t).Ceremonies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Confirmed, BackupToken: &ledger.TokenRecord{Name: "vault1"},
		Keys: []ledger.KeyRecord{{Locator: "o1", Role: "ZSK", Type: "EC P-256"}, {Locator: "o2", Role: "KSK", Type: "EC P-256"}}}
	if err := store.End(ctx, old); err != nil {
		t.Fatal(err)
	}
	st := &enforcer.State{Keys: []*enforcer.Key{key(1, "o1", enforcer.ZSK, enforcer.BackupDone), key(2, "o2", enforcer.KSK, enforcer.BackupDone),
		key(3, "n1", enforcer.ZSK, enforcer.BackupPrepared)}}
	c := ceremonyOf("n1")
	bt := hsmcheck.Result{Token: hsmcheck.Token{Name: "vault2", Kind: hsmcheck.KindBackupToken},
		Contents: &hsmcheck.Contents{Keys: []hsmcheck.Key{{ID: "n1", Type: "EC", Curve: "P-256"}, {ID: "o2", Type: "EC", Curve: "P-256"}}}}
	w, n := older(st, store, c, bt)
	if n != 2 || len(w) != 1 || w[0] != `key o1 (ZSK) is missing from backup token "vault2": only backup token "vault1" of ceremony c1 holds it` {
		t.Errorf("got %d checked, %q", n, w)
	}
}

func TestExamine(t *testing.T) {
	e := &Env{}
	c := ceremonyOf("a")
	after := &enforcer.State{Keys: []*enforcer.Key{
		key(1, "a", enforcer.ZSK, enforcer.BackupDone),
		key(2, "new", enforcer.ZSK, enforcer.BackupRequired), // made during the ceremony
		key(3, "sneaky", enforcer.ZSK, enforcer.BackupDone),  // Done without verification
	}}
	left, warn := e.examine(after, ledger.Coverage{}, c, map[string]bool{})
	if left != 1 || warn == nil || !strings.Contains(warn.Error(), "marked key sneaky Done without verification") {
		t.Errorf("left %d, warn %v", left, warn)
	}
	after.Keys[0].Backup = enforcer.BackupPrepared
	after.Keys = after.Keys[:2]
	if _, warn := e.examine(after, ledger.Coverage{}, c, map[string]bool{}); warn == nil || !strings.Contains(warn.Error(), "key a is Prepared in the enforcer after commit, not Done") {
		t.Errorf("not Done after commit: %v", warn)
	}
}

// The worst of several repositories' errors decides the exit status.
func TestJoinErrs(t *testing.T) {
	var r *Refusal
	var w *Warning
	if err := joinErrs([]error{&Warning{"w"}, &Refusal{"r"}}); !errors.As(err, &r) || err.Error() != "w; r" {
		t.Errorf("warning and refusal: %v", err)
	}
	if err := joinErrs([]error{&Warning{"w1"}, &Warning{"w2"}}); !errors.As(err, &w) {
		t.Errorf("warnings: %v", err)
	}
	if err := joinErrs([]error{&Refusal{"r"}, errors.New("io")}); errors.As(err, &r) {
		t.Errorf("an operational error was made a refusal: %v", err)
	}
	if joinErrs(nil) != nil {
		t.Error("nothing became an error")
	}
}
