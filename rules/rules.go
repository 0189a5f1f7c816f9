// Package rules evaluates the two rules of the key backup procedure against
// the enforcer's state and the confirmed ceremonies:
//
//  1. keys may never be used for signing before they are backed up;
//  2. enough backed-up keys must be available until the next backup.
package rules

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Input is what the rules are evaluated on.
type Input struct {
	Now           time.Time // the time evaluated (--at)
	State         *enforcer.State
	Store         *ledger.Store
	RequireBackup map[string]bool // repository -> <RequireBackup/>
	Interval      time.Duration   // backup schedule
	Grace         time.Duration
	NewZones      map[string]int // policy -> zones expected before the next backup
	// OnNoHSM reports a key that no HSM of its repository holds, every
	// token read; nil when the HSMs were not read. Such a pool key is no
	// spare: the enforcer would hand it out and the signer find no key.
	OnNoHSM func(*enforcer.Key) bool
}

// Unbacked is a key in use whose backup is not confirmed: rule 1 broken.
type Unbacked struct {
	Zone    string   `json:"zone"`
	Role    string   `json:"role"`
	KeyTag  int      `json:"keytag"`
	Locator string   `json:"locator"`
	Backup  string   `json:"enforcer_backup"` // the enforcer's backup state
	Reason  string   `json:"reason"`
	Live    []string `json:"live"` // its records rumoured or omnipresent: "DNSKEY rumoured"
}

// Pool is the enforcer's stock of unused keys for one policy key: the keys
// hsm_key_factory_get_key hands out, lowest id first, whatever their backup.
type Pool struct {
	Policy     string        `json:"policy"`
	Role       string        `json:"role"`
	Algorithm  int           `json:"algorithm"`
	Bits       int           `json:"bits"`
	Repository string        `json:"repository"`
	Lifetime   time.Duration `json:"-"`
	Manual     bool          `json:"manual_rollover"`
	Zones      int           `json:"zone_count"` // zones drawing on it (1 for shared keys)
	Unused     int           `json:"unused"`
	Covered    int           `json:"covered"` // backed-up keys at the head, in hand-out order
	Gap        bool          `json:"gap"`     // a key that is not backed up (or on no HSM) stands before backed-up ones
	// OnNoHSM counts the unused keys no HSM holds (nil: the HSMs were not
	// read): never spares, and they end the head like a key not backed up.
	OnNoHSM *int      `json:"on_no_hsm,omitempty"`
	Until   time.Time `json:"until"`  // next backup due, plus grace
	Needed  int       `json:"needed"` // keys taken until then
	Spare   int       `json:"spare"`  // covered - needed
	// RunsOut is when the enforcer takes a key beyond the covered ones; zero
	// when not within ten years.
	RunsOut time.Time `json:"-"`
	// Idle is a pool no zone draws on and no new zone is expected for.
	Idle bool `json:"idle"`
}

// MarshalJSON writes durations in seconds and an unknown time as null.
func (p Pool) MarshalJSON() ([]byte, error) {
	type plain Pool
	var runsOut *time.Time
	if !p.RunsOut.IsZero() {
		runsOut = &p.RunsOut
	}
	return json.Marshal(struct {
		plain
		LifetimeSeconds int64      `json:"lifetime_seconds"`
		RunsOut         *time.Time `json:"runs_out"`
	}{plain(p), int64(p.Lifetime.Seconds()), runsOut})
}

// Name labels the pool: policy/role/algorithm/bits/repository.
func (p Pool) Name() string {
	return fmt.Sprintf("%s/%s/%d/%d/%s", p.Policy, p.Role, p.Algorithm, p.Bits, p.Repository)
}

// Age is the time since a repository's last confirmed ceremony.
type Age struct {
	Repository string
	Last       *ledger.Ceremony // nil: never
	Age        time.Duration
	Due        time.Time // when the next backup is due
}

// MarshalJSON writes the age in seconds, and null for what never happened.
func (a Age) MarshalJSON() ([]byte, error) {
	doc := struct {
		Repository string     `json:"repository"`
		LastID     *string    `json:"last_ceremony"`
		LastAt     *time.Time `json:"last_backup"`
		AgeSeconds *int64     `json:"age_seconds"`
		Due        time.Time  `json:"next_due"`
	}{Repository: a.Repository, Due: a.Due}
	if a.Last != nil {
		age := int64(a.Age.Seconds())
		doc.LastID, doc.LastAt, doc.AgeSeconds = &a.Last.ID, &a.Last.Ended, &age
	}
	return json.Marshal(doc)
}

// Result is the evaluation.
type Result struct {
	Unbacked []Unbacked `json:"unbacked_in_use"`
	Pools    []Pool     `json:"pools"`
	Ages     []Age      `json:"backups"`
}

// Horizon bounds how far ahead RunsOut is looked for.
const Horizon = 10 * 365 * 24 * time.Hour

// BackedUp reports whether k counts as backed up: a confirmed ceremony
// covers it and, where the repository has RequireBackup, the enforcer has it
// Done. A key the enforcer has Not Required there (an imported key, or one
// made before RequireBackup was turned on) never becomes Done: the
// ceremony is its only record, and enough.
func BackedUp(cov ledger.Coverage, requireBackup map[string]bool, k *enforcer.Key) bool {
	return NotBackedUp(cov, requireBackup, k) == ""
}

// NotBackedUp says why k does not count as backed up, or "" when it does.
func NotBackedUp(cov ledger.Coverage, requireBackup map[string]bool, k *enforcer.Key) string {
	if cov.Covering(k.Repository, k.Locator) == nil {
		return "in no confirmed backup ceremony"
	}
	if requireBackup[k.Repository] && k.Backup != enforcer.BackupDone && k.Backup != enforcer.BackupNotRequired {
		return fmt.Sprintf("the enforcer has it %s, not Done", k.Backup)
	}
	return ""
}

// CoveredByKeyguardOnly reports whether k counts as backed up only by
// ods-keyguard's ceremony: RequireBackup, and the enforcer has it Not
// Required.
func CoveredByKeyguardOnly(cov ledger.Coverage, requireBackup map[string]bool, k *enforcer.Key) bool {
	return requireBackup[k.Repository] && k.Backup == enforcer.BackupNotRequired && cov.Covering(k.Repository, k.Locator) != nil
}

// Evaluate applies both rules.
func Evaluate(in Input) Result {
	cov := in.Store.Coverage()
	r := Result{Unbacked: []Unbacked{}, Pools: []Pool{}, Ages: []Age{}}
	// Rule 1: every live use of a key that is not backed up.
	for _, k := range in.State.Keys {
		reason := NotBackedUp(cov, in.RequireBackup, k)
		if k.State == enforcer.Delete || reason == "" {
			continue
		}
		for _, u := range k.Uses {
			if u.Live() {
				r.Unbacked = append(r.Unbacked, Unbacked{Zone: u.Zone.Name, Role: u.Role.String(), KeyTag: u.KeyTag,
					Locator: k.Locator, Backup: k.Backup.String(), Reason: reason, Live: liveRecords(u)})
			}
		}
	}
	sort.Slice(r.Unbacked, func(i, j int) bool {
		a, b := r.Unbacked[i], r.Unbacked[j]
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.Role < b.Role
	})
	// Backup age, and so the horizon of rule 2, per repository with keys.
	due := map[string]time.Time{}
	repos := map[string]bool{}
	for _, k := range in.State.Keys {
		if k.State != enforcer.Delete {
			repos[k.Repository] = true
		}
	}
	for _, repo := range slices.Sorted(maps.Keys(repos)) {
		a := Age{Repository: repo, Due: in.Now}
		if c := in.Store.LastConfirmed(repo); c != nil {
			a.Last, a.Age = c, in.Now.Sub(c.Ended)
			a.Due = c.Ended.Add(in.Interval)
		}
		due[repo] = a.Due
		r.Ages = append(r.Ages, a)
	}
	// Rule 2: each policy key's pool against what its zones will take.
	for _, p := range in.State.Policies {
		var zones []*enforcer.Zone
		for _, z := range in.State.Zones {
			if z.Policy == p {
				zones = append(zones, z)
			}
		}
		for _, pk := range p.Keys {
			r.Pools = append(r.Pools, in.pool(cov, p, pk, zones, due[pk.Repository]))
		}
	}
	return r
}

// liveRecords names the records of a use that are rumoured or omnipresent.
func liveRecords(u *enforcer.Use) []string {
	var out []string
	for _, t := range []enforcer.RecordType{enforcer.RecordDS, enforcer.RecordDNSKEY, enforcer.RecordRRSIGDNSKEY, enforcer.RecordRRSIG} {
		if s, ok := u.States[t]; ok && (s == enforcer.Rumoured || s == enforcer.Omnipresent) {
			out = append(out, t.String()+" "+s.String())
		}
	}
	return out
}

func (in *Input) pool(cov ledger.Coverage, p *enforcer.Policy, pk enforcer.PolicyKey, zones []*enforcer.Zone, due time.Time) Pool {
	pool := Pool{Policy: p.Name, Role: pk.Role.String(), Algorithm: pk.Algorithm, Bits: pk.Bits,
		Repository: pk.Repository, Lifetime: pk.Lifetime, Manual: pk.ManualRollover}
	keys := PoolKeys(in.State, p, pk)
	pool.Unused = len(keys)
	head := true
	if in.OnNoHSM != nil {
		pool.OnNoHSM = new(int)
	}
	for _, k := range keys {
		switch {
		case in.OnNoHSM != nil && in.OnNoHSM(k):
			*pool.OnNoHSM++
			head = false
		case BackedUp(cov, in.RequireBackup, k) && head:
			pool.Covered++
		case BackedUp(cov, in.RequireBackup, k):
			pool.Gap = true
		default:
			head = false
		}
	}
	if due.Before(in.Now) {
		due = in.Now
	}
	pool.Until = due.Add(in.Grace)
	newZones := in.NewZones[p.Name]
	rolls := Rolls(p, pk, zones, newZones, in.Now)
	pool.Zones = len(rolls)
	pool.Idle = len(rolls) == 0
	if pk.ManualRollover || pk.Lifetime <= 0 {
		// Manual rollovers take keys when the operator says: count none,
		// but a new zone still takes one at once.
		pool.Needed = NewZoneKeys(p, len(zones), newZones)
		pool.Spare = pool.Covered - pool.Needed
		return pool
	}
	pool.Needed = Needed(rolls, pk.Lifetime, pool.Until)
	pool.Spare = pool.Covered - pool.Needed
	pool.RunsOut = RunsOut(rolls, pk.Lifetime, pool.Covered, in.Now)
	return pool
}

// PoolKeys returns the unused keys the enforcer hands out for policy key pk
// of p, in its order: lowest id first.
func PoolKeys(st *enforcer.State, p *enforcer.Policy, pk enforcer.PolicyKey) []*enforcer.Key {
	var keys []*enforcer.Key
	for _, k := range st.Keys {
		if k.State == enforcer.Unused && k.Policy == p && k.Role == pk.Role && k.Algorithm == pk.Algorithm &&
			k.Bits == pk.Bits && k.Repository == pk.Repository {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ID < keys[j].ID })
	return keys
}

// Rolls returns when each of zones (all of policy p) next takes a key for
// pk: its next roll, or now when none is set. Each expected new zone takes
// one now. With <ShareKeys/> the policy's zones take one key together: a
// new zone takes none when the policy has a zone already, and one when it
// has none.
func Rolls(p *enforcer.Policy, pk enforcer.PolicyKey, zones []*enforcer.Zone, newZones int, now time.Time) []time.Time {
	var rolls []time.Time
	for _, z := range zones {
		t := z.NextRoll[pk.Role]
		if t.IsZero() {
			t = now
		}
		rolls = append(rolls, t)
	}
	if p.KeysShared {
		sort.Slice(rolls, func(i, j int) bool { return rolls[i].Before(rolls[j]) })
		switch {
		case len(rolls) > 1:
			rolls = rolls[:1]
		case len(rolls) == 0 && newZones > 0:
			rolls = []time.Time{now}
		}
		return rolls
	}
	for i := 0; i < newZones; i++ {
		rolls = append(rolls, now)
	}
	return rolls
}

// NewZoneKeys is how many keys of one role the expected new zones take at
// once: one each, or with <ShareKeys/> one for all when the policy has no
// zone yet and none when it has.
func NewZoneKeys(p *enforcer.Policy, zones, newZones int) int {
	if !p.KeysShared {
		return newZones
	}
	if zones == 0 && newZones > 0 {
		return 1
	}
	return 0
}

// Needed counts the keys taken until t by zones whose next rolls are
// rolls: nextRoll <= t ? 1 + floor((t - nextRoll) / lifetime) : 0 each.
func Needed(rolls []time.Time, lifetime time.Duration, t time.Time) int {
	n := 0
	for _, r := range rolls {
		if !r.After(t) {
			n += 1 + int(t.Sub(r)/lifetime)
		}
	}
	return n
}

// RunsOut is the moment the (covered+1)th key is taken, or zero when that
// is more than Horizon away.
func RunsOut(rolls []time.Time, lifetime time.Duration, covered int, now time.Time) time.Time {
	if len(rolls) == 0 {
		return time.Time{}
	}
	lo, hi := now.Add(-lifetime*time.Duration(covered+1)-Horizon), now.Add(Horizon)
	if Needed(rolls, lifetime, hi) <= covered {
		return time.Time{}
	}
	// The smallest t with Needed(t) > covered: Needed only grows with t.
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if Needed(rolls, lifetime, mid) > covered {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.Truncate(time.Second)
}
