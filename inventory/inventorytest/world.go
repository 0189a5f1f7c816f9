package inventorytest

import (
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

// World builds an enforcer state for a test, key by key, with the key
// pairs the tokens hold: one policy, "default", of a KSK (or CSK) and a
// ZSK of algorithm 13.
type World struct {
	t      testing.TB
	St     *enforcer.State
	Policy *enforcer.Policy
	// Pairs are the key pairs, by locator.
	Pairs map[string]hsmcheck.Key
	id    int64
}

// NewWorld is an empty state with the default policy.
func NewWorld(t testing.TB) *World {
	p := &enforcer.Policy{ID: 1, Name: "default", ParentDSTTL: time.Hour, ParentPropagationDelay: time.Hour,
		KeyTTL: time.Hour, SignaturesResign: 2 * time.Hour, SignaturesRefresh: 72 * time.Hour,
		Keys: []enforcer.PolicyKey{
			{Role: enforcer.KSK, Algorithm: 13, Bits: 256, Lifetime: 365 * 24 * time.Hour, Repository: "R"},
			{Role: enforcer.ZSK, Algorithm: 13, Bits: 256, Lifetime: 90 * 24 * time.Hour, Repository: "R"},
		}}
	return &World{t: t, St: &enforcer.State{Policies: []*enforcer.Policy{p}}, Policy: p, Pairs: map[string]hsmcheck.Key{}}
}

// Key adds a key of repo to the enforcer's pool (UNUSED, no zone), a new
// key pair under locator.
func (w *World) Key(repo, locator string, role enforcer.Role, backup enforcer.BackupState) *enforcer.Key {
	w.t.Helper()
	w.id++
	pair := NewKey(w.t, locator)
	w.Pairs[pair.ID] = pair
	k := &enforcer.Key{ID: w.id, Locator: pair.ID, Repository: repo, Policy: w.Policy, Role: role, State: enforcer.Unused,
		Backup: backup, Algorithm: 13, Bits: 256, Inception: time.Now().UTC().Add(-time.Hour)}
	w.St.Keys = append(w.St.Keys, k)
	return k
}

// Zone returns the zone of that name, added with the default policy when
// new, its next rolls months away.
func (w *World) Zone(name string) *enforcer.Zone {
	if z := w.St.Zone(name); z != nil {
		return z
	}
	w.id++
	// Its keys were made lately: the next rolls are months away.
	now := time.Now().UTC()
	z := &enforcer.Zone{ID: w.id, Name: strings.TrimSuffix(name, "."), Policy: w.Policy, NextRoll: map[enforcer.Role]time.Time{
		enforcer.KSK: now.Add(300 * 24 * time.Hour), enforcer.ZSK: now.Add(80 * 24 * time.Hour), enforcer.CSK: now.Add(80 * 24 * time.Hour)}}
	w.St.Zones = append(w.St.Zones, z)
	return z
}

// Assign gives k to zone in role, its DS in state ds; live publishes it
// (every record omnipresent), else it is assigned with nothing published.
func (w *World) Assign(zone string, k *enforcer.Key, ds enforcer.DSState, live bool) *enforcer.Use {
	z := w.Zone(zone)
	k.State = enforcer.Private
	state := enforcer.Hidden
	if live {
		state = enforcer.Omnipresent
	}
	u := &enforcer.Use{Key: k, Zone: z, Role: k.Role, KeyTag: KeyTag(w.Pairs[k.Locator]), DSAtParent: ds,
		States:  map[enforcer.RecordType]enforcer.RecordState{enforcer.RecordDNSKEY: state, enforcer.RecordRRSIGDNSKEY: state},
		Changed: map[enforcer.RecordType]time.Time{}}
	if k.Role != enforcer.ZSK {
		u.States[enforcer.RecordDS] = state
	}
	if k.Role != enforcer.KSK {
		u.States[enforcer.RecordRRSIG] = state
	}
	k.Uses = append(k.Uses, u)
	z.Keys = append(z.Keys, u)
	return u
}

// Pair is the key pair of k.
func (w *World) Pair(k *enforcer.Key) hsmcheck.Key { return w.Pairs[k.Locator] }

// Line is the line the enforcer hands its DS hooks for k in zone.
func (w *World) Line(zone string, k *enforcer.Key) string { return Line(zone, w.Pair(k)) }
