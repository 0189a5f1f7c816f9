package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// What inventory, verify and status make of a snapshot, on the fake: the
// enforcer's state and two tokens in memory, the ceremonies in a ledger of
// files. The same against SoftHSMv2 and ods-enforcerd are the verify_ and
// status_ scripts.

// invLab is repository R with mirror m: a KSK in use on example.com,
// covered by a confirmed ceremony and on both tokens; a pool ZSK not
// backed up and missing on the mirror; an orphan on R.
type invLab struct {
	w        *inventorytest.World
	f        *inventorytest.Fake
	ksk, zsk *enforcer.Key
	store    *ledger.Store
}

func newInvLab(t *testing.T) *invLab {
	t.Helper()
	w := inventorytest.NewWorld(t)
	ksk := w.Key("R", "a1", enforcer.KSK, enforcer.BackupDone)
	w.Assign("example.com", ksk, enforcer.DSSeen, true)
	zsk := w.Key("R", "b2", enforcer.ZSK, enforcer.BackupRequired)
	f := inventorytest.New(w.St)
	f.Put([]hsmcheck.Key{w.Pair(ksk), w.Pair(zsk), inventorytest.NewKey(t, "ff")}, "R")
	f.Put([]hsmcheck.Key{w.Pair(ksk)}, "m")
	l := ledgertest.New(t)
	store, err := l.Ceremonies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Confirmed, RequireBackup: true,
		Ended: time.Now().UTC(), Keys: []ledger.KeyRecord{{Locator: ksk.Locator, Role: "KSK", Fingerprint: w.Pair(ksk).Fingerprint}}}
	if err := store.End(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if store, err = l.Ceremonies(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &invLab{w: w, f: f, ksk: ksk, zsk: zsk, store: store}
}

func (l *invLab) snapshot(t *testing.T) *inventory.Snapshot {
	t.Helper()
	snap, err := inventory.Take(t.Context(), l.f, inventorytest.Tokens("R", "m"), hsmcheck.Request{})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestInventoryOnTheFake(t *testing.T) {
	l := newInvLab(t)
	snap := l.snapshot(t)
	if len(snap.Of("R")) != 2 || inventory.Unreadable(snap.Results) != nil {
		t.Fatalf("snapshot: %+v", snap.Results)
	}
	r := inventory.Build(snap.State, snap.Results, "")
	r.Cover(l.store.Coverage(), map[string]bool{"R": true})
	if r.Verdict() != "problems" || len(r.Problems) != 1 || r.Problems[0].Kind != inventory.Missing || r.Problems[0].Token != "m" {
		t.Fatalf("verdict %s, problems %+v", r.Verdict(), r.Problems)
	}
	if !strings.HasPrefix(r.Problems[0].String(), "m: key "+l.zsk.Locator+": ") {
		t.Errorf("problem: %s", r.Problems[0])
	}
	var inv, ver bytes.Buffer
	if err := r.WriteInventory(&inv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LOCATOR", l.ksk.Locator, "in use", "c1", "example.com", "missing", "ff"} {
		if !strings.Contains(inv.String(), want) {
			t.Errorf("inventory lacks %q:\n%s", want, inv.String())
		}
	}
	if err := r.WriteVerify(&ver); err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(ver.String(), "\n", 2)[0]; first != "verify: problems: 2 keys, 2 of 2 tokens read, 1 problem, 1 orphan" {
		t.Errorf("verify's first line: %q", first)
	}
	for name, doc := range map[string]any{"inventory": r.InventoryDoc(), "verify": r.VerifyDoc()} {
		b, err := json.Marshal(doc)
		if err != nil || !strings.HasPrefix(string(b), `{"schema":"ods-keyguard/`+name+`/1",`) {
			t.Errorf("%s document: %v %s", name, err, b)
		}
	}
	// The ZSK comes back on the mirror: clean.
	l.f.Put([]hsmcheck.Key{l.w.Pair(l.zsk)}, "m")
	if r := inventory.Build(l.snapshot(t).State, l.snapshot(t).Results, "R"); r.Verdict() != "clean" {
		t.Errorf("clean: %s %+v", r.Verdict(), r.Problems)
	}
}

func TestStatusOnTheFake(t *testing.T) {
	l := newInvLab(t)
	// The ZSK goes into use without a backup: rule 1.
	l.w.Assign("example.com", l.zsk, enforcer.DSUnsubmitted, true)
	l.f.TokenErr["m"] = errors.New(`mirror "m": login: CKR_PIN_INCORRECT`)
	snap := l.snapshot(t)
	repos := inventory.Status(snap.State, snap.Results, l.store, []inventory.RepositoryConf{{Name: "R", RequireBackup: true}})
	if len(repos) != 1 {
		t.Fatalf("repositories: %+v", repos)
	}
	s := repos[0]
	if s.Keys != 2 || s.Backup.Done != 1 || s.Backup.Required != 1 || len(s.Unbacked) != 1 || s.Unbacked[0].Locator != l.zsk.Locator {
		t.Errorf("status: %+v", s)
	}
	if len(s.Tokens) != 2 || !s.Tokens[0].Reachable || s.Tokens[1].Reachable || s.Tokens[1].Error == "" || s.LastConfirmed == nil || s.LastConfirmed.ID != "c1" {
		t.Errorf("tokens and ceremonies: %+v", s)
	}
	var b bytes.Buffer
	if err := inventory.WriteStatus(&b, repos); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"repository R", "reachable", "c1", l.zsk.Locator} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if doc, err := json.Marshal(inventory.StatusDoc(repos)); err != nil || !strings.HasPrefix(string(doc), `{"schema":"ods-keyguard/status/1",`) {
		t.Errorf("status document: %v %s", err, doc)
	}
	if err := inventory.Unreadable(snap.Results); err == nil {
		t.Error("the unreadable mirror is not named")
	}
}

// A database that cannot be read fails the snapshot, and the token reads
// are reaped first; TakeFor reads the tokens the state asks for; a token
// read is given three quarters of the time left.
func TestTake(t *testing.T) {
	l := newInvLab(t)
	l.f.StateErr = errors.New("database is locked")
	if _, err := inventory.Take(t.Context(), l.f, inventorytest.Tokens("R"), hsmcheck.Request{}); err == nil || err.Error() != "database is locked" {
		t.Errorf("Take: %v", err)
	}
	if _, err := inventory.TakeFor(t.Context(), l.f, inventorytest.Tokens("R"), nil); err == nil {
		t.Error("TakeFor read past a database error")
	}
	l.f.StateErr = nil
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	snap, err := inventory.TakeFor(ctx, l.f, inventorytest.Tokens("R"), func(st *enforcer.State) hsmcheck.Request {
		return hsmcheck.Request{IDs: []string{l.ksk.Locator}}
	})
	if err != nil || len(snap.Results) != 1 || len(snap.Results[0].Contents.Keys) != 1 {
		t.Fatalf("TakeFor: %v %+v", err, snap)
	}
	if l.f.String() == "" {
		t.Error("the source has no name")
	}
}
