package rules

import (
	"context"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func TestNeeded(t *testing.T) {
	tests := []struct {
		name  string
		rolls []time.Duration // next roll, from t0
		life  time.Duration
		until time.Duration
		want  int
	}{
		{"roll after the horizon", []time.Duration{10 * day}, 30 * day, 7 * day, 0},
		{"roll exactly at the horizon", []time.Duration{7 * day}, 30 * day, 7 * day, 1},
		{"one roll inside", []time.Duration{3 * day}, 30 * day, 7 * day, 1},
		{"short lifetime: 1 + floor(6d/2d)", []time.Duration{day}, 2 * day, 7 * day, 4},
		{"overdue roll", []time.Duration{-day}, 30 * day, 7 * day, 1},
		{"two zones", []time.Duration{day, 6 * day}, 3 * day, 7 * day, 3 + 1},
		{"no zones", nil, day, 7 * day, 0},
		{"PT4H ZSK over a week", []time.Duration{time.Hour}, 4 * time.Hour, 7 * day, 1 + 41},
	}
	for _, tt := range tests {
		var rolls []time.Time
		for _, r := range tt.rolls {
			rolls = append(rolls, t0.Add(r))
		}
		if got := Needed(rolls, tt.life, t0.Add(tt.until)); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestRunsOut(t *testing.T) {
	rolls := []time.Time{t0.Add(day)}
	// Covered 2 with a 3-day lifetime: keys at +1d, +4d; the third at +7d.
	if got := RunsOut(rolls, 3*day, 2, t0); !got.Equal(t0.Add(7 * day)) {
		t.Errorf("got %v, want %v", got, t0.Add(7*day))
	}
	if got := RunsOut(rolls, 3*day, 0, t0); !got.Equal(t0.Add(day)) {
		t.Errorf("covered 0: got %v", got)
	}
	if got := RunsOut(nil, day, 0, t0); !got.IsZero() {
		t.Errorf("no zones: got %v", got)
	}
	if got := RunsOut(rolls, 365*day, 20, t0); !got.IsZero() {
		t.Errorf("beyond the horizon: got %v", got)
	}
}

// A pool whose head key is not backed up while later ones are: the enforcer
// hands out the head first, so nothing is covered, and there is a gap.
func TestPoolHeadGap(t *testing.T) {
	p := &enforcer.Policy{ID: 1, Name: "test", Keys: []enforcer.PolicyKey{{Role: enforcer.ZSK, Algorithm: 13, Bits: 256, Lifetime: 30 * day, Repository: "R"}}}
	z := &enforcer.Zone{Name: "example.com", Policy: p, NextRoll: map[enforcer.Role]time.Time{enforcer.ZSK: t0.Add(3 * day)}}
	var keys []*enforcer.Key
	var recs []ledger.KeyRecord
	for i, loc := range []string{"a1", "a2", "a3"} {
		keys = append(keys, &enforcer.Key{ID: int64(i + 1), Locator: loc, Repository: "R", Policy: p, Role: enforcer.ZSK,
			State: enforcer.Unused, Algorithm: 13, Bits: 256, Backup: enforcer.BackupDone})
		if i > 0 {
			recs = append(recs, ledger.KeyRecord{Locator: loc})
		}
	}
	store := newStore(t, &ledger.Ceremony{ID: "c", Repository: "R", Status: ledger.Confirmed, Ended: t0.Add(-day), Keys: recs})
	in := Input{Now: t0, State: &enforcer.State{Policies: []*enforcer.Policy{p}, Zones: []*enforcer.Zone{z}, Keys: keys},
		Store: store, RequireBackup: map[string]bool{"R": true}, Interval: 7 * day, Grace: day}
	r := Evaluate(in)
	if len(r.Pools) != 1 {
		t.Fatalf("pools: %+v", r.Pools)
	}
	pool := r.Pools[0]
	if pool.Unused != 3 || pool.Covered != 0 || !pool.Gap || pool.Needed != 1 || pool.Spare != -1 {
		t.Errorf("pool %+v", pool)
	}
	// Due: last ceremony + 7d = t0 + 6d, plus a day's grace.
	if !pool.Until.Equal(t0.Add(7 * day)) {
		t.Errorf("until %v", pool.Until)
	}
	// Back the head key up too: all three covered, spare 2.
	if err := store.End(context.Background(), &ledger.Ceremony{ID: "d", Repository: "R", Status: ledger.Confirmed, Ended: t0, Keys: []ledger.KeyRecord{{Locator: "a1"}}}); err != nil {
		t.Fatal(err)
	}
	pool = Evaluate(in).Pools[0]
	if pool.Covered != 3 || pool.Gap || pool.Spare != 2 {
		t.Errorf("after the head's backup: %+v", pool)
	}
	// Shared keys: two zones count once.
	p.KeysShared = true
	in.State.Zones = append(in.State.Zones, &enforcer.Zone{Name: "example.net", Policy: p, NextRoll: map[enforcer.Role]time.Time{enforcer.ZSK: t0.Add(4 * day)}})
	if got := Evaluate(in).Pools[0]; got.Needed != 1 || got.Zones != 1 {
		t.Errorf("shared: %+v", got)
	}
	// New zones on a shared policy that has zones take nothing.
	in.NewZones = map[string]int{"test": 2}
	if got := Evaluate(in).Pools[0]; got.Needed != 1 {
		t.Errorf("new zones, shared: %+v", got)
	}
	// Not shared, a new zone expected takes a key at once.
	p.KeysShared = false
	in.State.Zones = in.State.Zones[:1]
	if got := Evaluate(in).Pools[0]; got.Needed != 3 {
		t.Errorf("new zones: %+v", got)
	}
	// Manual rollover keys are not counted.
	p.Keys[0].ManualRollover = true
	in.NewZones = nil
	if got := Evaluate(in).Pools[0]; got.Needed != 0 {
		t.Errorf("manual: %+v", got)
	}
}

func TestRuleOneUnbacked(t *testing.T) {
	p := &enforcer.Policy{ID: 1, Name: "test"}
	z := &enforcer.Zone{Name: "example.com", Policy: p}
	k := &enforcer.Key{ID: 1, Locator: "a1", Repository: "R", Policy: p, Role: enforcer.KSK, State: enforcer.Private, Backup: enforcer.BackupDone}
	u := &enforcer.Use{Key: k, Zone: z, Role: enforcer.KSK, KeyTag: 12345, States: map[enforcer.RecordType]enforcer.RecordState{enforcer.RecordDNSKEY: enforcer.Rumoured}}
	k.Uses = []*enforcer.Use{u}
	store := newStore(t)
	in := Input{Now: t0, State: &enforcer.State{Policies: []*enforcer.Policy{p}, Zones: []*enforcer.Zone{z}, Keys: []*enforcer.Key{k}},
		Store: store, RequireBackup: map[string]bool{"R": true}, Interval: 7 * day}
	// Done in the enforcer (committed by hand) but in no ceremony: broken.
	if r := Evaluate(in); len(r.Unbacked) != 1 || r.Unbacked[0].Reason != "in no confirmed backup ceremony" {
		t.Fatalf("got %+v", r.Unbacked)
	}
	if err := store.End(context.Background(), &ledger.Ceremony{ID: "c", Repository: "R", Status: ledger.Confirmed, Keys: []ledger.KeyRecord{{Locator: "a1"}}}); err != nil {
		t.Fatal(err)
	}
	if r := Evaluate(in); len(r.Unbacked) != 0 {
		t.Fatalf("covered: got %+v", r.Unbacked)
	}
	// Covered, and Not Required in the enforcer (imported, or made before
	// RequireBackup was turned on): the ceremony is enough.
	k.Backup = enforcer.BackupNotRequired
	if r := Evaluate(in); len(r.Unbacked) != 0 {
		t.Fatalf("not required: got %+v", r.Unbacked)
	}
	// Covered, but the enforcer has it Required again: still broken.
	k.Backup = enforcer.BackupRequired
	if r := Evaluate(in); len(r.Unbacked) != 1 {
		t.Fatalf("not Done: got %+v", r.Unbacked)
	}
	// Hidden records are not use.
	k.Backup = enforcer.BackupRequired
	u.States[enforcer.RecordDNSKEY] = enforcer.Hidden
	if r := Evaluate(in); len(r.Unbacked) != 0 {
		t.Fatalf("hidden: got %+v", r.Unbacked)
	}
}

// newStore is a ceremony store in memory holding cs as ended ceremonies.
func newStore(t *testing.T, cs ...*ledger.Ceremony) *ledger.Store {
	t.Helper()
	ctx := context.Background()
	s, err := ledgertest.New(t).Ceremonies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := s.End(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// ShareKeys: a new zone takes no key when the policy has a zone already,
// and one of each role when it has none; the same in rule 2 and pool fill.
func TestSharedKeysNewZones(t *testing.T) {
	p := &enforcer.Policy{ID: 1, Name: "shared", KeysShared: true}
	pk := enforcer.PolicyKey{Role: enforcer.KSK, Lifetime: 365 * day}
	z := &enforcer.Zone{Name: "a.example", Policy: p, NextRoll: map[enforcer.Role]time.Time{enforcer.KSK: t0.Add(300 * day)}}
	if rolls := Rolls(p, pk, []*enforcer.Zone{z}, 3, t0); len(rolls) != 1 || !rolls[0].Equal(t0.Add(300*day)) {
		t.Errorf("with a zone: %v", rolls)
	}
	if rolls := Rolls(p, pk, nil, 3, t0); len(rolls) != 1 || !rolls[0].Equal(t0) {
		t.Errorf("without a zone: %v", rolls)
	}
	if n := NewZoneKeys(p, 1, 3); n != 0 {
		t.Errorf("manual, with a zone: %d", n)
	}
	if n := NewZoneKeys(p, 0, 3); n != 1 {
		t.Errorf("manual, without a zone: %d", n)
	}
	p.KeysShared = false
	if rolls := Rolls(p, pk, []*enforcer.Zone{z}, 3, t0); len(rolls) != 4 {
		t.Errorf("not shared: %v", rolls)
	}
}

// A backed-up pool key that no HSM holds is no spare, and the enforcer
// hands it out first: the keys behind it are not at the head either.
func TestPoolKeyOnNoHSM(t *testing.T) {
	p := &enforcer.Policy{ID: 1, Name: "test", Keys: []enforcer.PolicyKey{{Role: enforcer.ZSK, Algorithm: 13, Bits: 256, Lifetime: 30 * day, Repository: "R"}}}
	z := &enforcer.Zone{Name: "example.com", Policy: p, NextRoll: map[enforcer.Role]time.Time{enforcer.ZSK: t0.Add(3 * day)}}
	var keys []*enforcer.Key
	var recs []ledger.KeyRecord
	for i, loc := range []string{"a1", "a2", "a3"} {
		keys = append(keys, &enforcer.Key{ID: int64(i + 1), Locator: loc, Repository: "R", Policy: p, Role: enforcer.ZSK,
			State: enforcer.Unused, Algorithm: 13, Bits: 256, Backup: enforcer.BackupDone})
		recs = append(recs, ledger.KeyRecord{Locator: loc})
	}
	store := newStore(t, &ledger.Ceremony{ID: "c", Repository: "R", Status: ledger.Confirmed, Ended: t0.Add(-day), Keys: recs})
	in := Input{Now: t0, State: &enforcer.State{Policies: []*enforcer.Policy{p}, Zones: []*enforcer.Zone{z}, Keys: keys},
		Store: store, RequireBackup: map[string]bool{"R": true}, Interval: 7 * day, Grace: day}
	if pl := Evaluate(in).Pools[0]; pl.Covered != 3 || pl.OnNoHSM != nil {
		t.Fatalf("HSMs not read: %+v", pl)
	}
	gone := map[string]bool{}
	in.OnNoHSM = func(k *enforcer.Key) bool { return gone[k.Locator] }
	gone["a3"] = true
	if pl := Evaluate(in).Pools[0]; pl.Covered != 2 || *pl.OnNoHSM != 1 || pl.Spare != 1 {
		t.Fatalf("last key on no HSM: %+v", pl)
	}
	gone["a1"] = true
	if pl := Evaluate(in).Pools[0]; pl.Covered != 0 || *pl.OnNoHSM != 2 || !pl.Gap || pl.Spare != -1 {
		t.Fatalf("head key on no HSM: %+v", pl)
	}
}
