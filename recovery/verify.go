package recovery

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Restored is one HSM checked after a restore.
type Restored struct {
	Name       string    `json:"name"`
	Kind       string    `json:"kind"`
	Repository string    `json:"repository"`
	Serial     string    `json:"serial"`
	Missing    []LostKey `json:"missing"` // backed-up keys not on it
	Differs    []LostKey `json:"differs"` // on it, but another key pair
	SerialNote string    `json:"serial_note"`
}

// Describe names the HSM as the messages do: repository "SoftHSM".
func (r Restored) Describe() string { return tokenName(r.Kind, r.Name) }

// Verification is the answer of recover verify.
type Verification struct {
	Complete bool       `json:"complete"`
	Summary  string     `json:"summary"`
	HSMs     []Restored `json:"hsms"`
	Lost     []LostKey  `json:"lost"` // in use, in no confirmed ceremony, gone with the HSMs: lost for good
	// Unused are keys made after the last ceremony and never handed out,
	// gone with the HSMs: nothing in use is lost, but the enforcer's pool
	// still lists them (PrunePool).
	Unused  []LostKey `json:"unused_lost"`
	Checked int       `json:"checked"`
	// Unknown says why a key missing on the HSMs may or may not be on the
	// backup: a backup token that could not be read (exit status 3).
	Unknown string `json:"unknown,omitempty"`
	// Restored says whether this verification records a restore: the
	// HSMs show one (a token no ceremony recorded), or the operator said
	// so (--restored). Otherwise it is a check of HSMs that were never
	// lost, recorded as such, not as a restore.
	Restored bool `json:"restored"`
	// Recorded says how the verification went into the records.
	Recorded string                        `json:"recorded,omitempty"`
	keys     map[string][]ledger.KeyRecord // repository -> the keys checked
}

// Verify checks restored tokens against the confirmed ceremonies: every key
// a confirmed ceremony backed up that OpenDNSSEC still needs, and every key
// of the repository's last confirmed ceremony, must be on every token with
// the public key the ceremony recorded. Needed keys that no ceremony covers
// and that no token holds are lost: those a zone uses are lost for good
// (Lost, the restore is incomplete); those no zone ever used cost nothing
// (Unused, the restore is complete without them).
//
// Where backup tokens are configured, a key missing on the HSMs that no
// backup token holds now is not a key the restore missed: it is lost
// (Lost when in use, Unused when not), whatever the ceremony recorded.
func Verify(st *enforcer.State, store *ledger.Store, tokens []Token, backups ...Token) *Verification {
	v := &Verification{Complete: true, HSMs: []Restored{}, Lost: []LostKey{}, Unused: []LostKey{}}
	cov := store.Coverage()
	needed := Needed(st)
	// What each repository's backup must have brought back.
	want := map[string]map[string]ledger.KeyRecord{}
	addWant := func(repo string, k ledger.KeyRecord) {
		if want[repo] == nil {
			want[repo] = map[string]ledger.KeyRecord{}
		}
		want[repo][k.Locator] = k
	}
	repos := map[string]bool{}
	for _, t := range tokens {
		repos[t.Repository] = true
	}
	for repo := range repos {
		if c := store.LastConfirmed(repo); c != nil {
			for _, k := range c.Keys {
				addWant(repo, k)
			}
		}
	}
	for _, k := range needed {
		if c := cov.Covering(k.Repository, k.Locator); c != nil {
			rec, _ := c.Key(k.Locator)
			addWant(k.Repository, rec)
		}
	}
	v.keys = map[string][]ledger.KeyRecord{}
	for repo, ks := range want {
		for _, l := range sortedKeys(ks) {
			v.keys[repo] = append(v.keys[repo], ks[l])
		}
	}
	// The tokens the ceremonies read: a serial alone tells no token from
	// another (hsmcheck/identity.go).
	var seen []hsmcheck.Recorded
	for _, c := range store.History() {
		for _, t := range c.Tokens {
			seen = append(seen, hsmcheck.Recorded{Label: t.Label, Serial: t.Serial, Where: "ceremony " + c.ID})
		}
	}
	onSome := map[string]bool{}
	gone := map[string]LostKey{} // repository/locator: on no backup token either
	// Keys found whose public key the token did not show (no public object
	// under their CKA_ID): present, but not compared with the record.
	uncompared := 0
	for _, t := range tokens {
		r := Restored{Name: t.Name, Kind: t.Kind, Repository: t.Repository, Serial: t.Serial, Missing: []LostKey{}, Differs: []LostKey{}}
		var locs []string
		for l := range want[t.Repository] {
			locs = append(locs, l)
		}
		sort.Strings(locs)
		for _, l := range locs {
			rec := want[t.Repository][l]
			got, n := t.Keys.Find(l)
			fp := got.Fingerprint
			switch {
			case n == 0:
				lk := describe(st, cov, t.Repository, rec)
				if note, why := offBackup(backups, rec); note != "" {
					lk.Recoverable, lk.BackupSource, lk.BackupNote = false, FromToken, note
					gone[t.Repository+"/"+l] = lk
					continue
				} else if why != "" {
					v.Unknown = why
				}
				r.Missing = append(r.Missing, lk)
			case rec.Fingerprint != "" && fp != "" && fp != rec.Fingerprint:
				r.Differs = append(r.Differs, describe(st, cov, t.Repository, rec))
			default:
				onSome[t.Repository+"/"+l] = true
				if rec.Fingerprint != "" && fp == "" {
					uncompared++
				}
			}
			v.Checked++
		}
		for _, k := range needed {
			if k.Repository == t.Repository {
				if _, n := t.Keys.Find(k.Locator); n > 0 {
					onSome[k.Repository+"/"+k.Locator] = true
				}
			}
		}
		c, ok := t.Keys.(*hsmcheck.Contents)
		if !ok || c == nil {
			c = &hsmcheck.Contents{Serial: t.Serial}
		}
		r.SerialNote = hsmcheck.RecognizeNote(c, seen)
		if len(r.Missing)+len(r.Differs) > 0 {
			v.Complete = false
		}
		v.HSMs = append(v.HSMs, r)
	}
	for _, k := range needed {
		if !repos[k.Repository] || onSome[k.Repository+"/"+k.Locator] || cov.Covering(k.Repository, k.Locator) != nil {
			continue
		}
		if Unused(k) {
			v.Unused = append(v.Unused, lostKey(cov, k))
		} else {
			v.Lost = append(v.Lost, lostKey(cov, k))
		}
	}
	for _, key := range sortedKeys(gone) {
		lk := gone[key]
		switch {
		case lk.Use == "unknown to the enforcer":
			// Neither needed by the enforcer nor on the backup: nothing to restore.
		case lk.Class == InUse:
			v.Lost = append(v.Lost, lk)
		default:
			v.Unused = append(v.Unused, lk)
		}
	}
	if len(v.Lost) > 0 {
		v.Complete = false
	}
	switch {
	case v.Complete:
		// Keys, not the key and HSM pairs of Checked: each key is
		// checked on every HSM of its repository.
		keys := 0
		for repo := range repos {
			keys += len(want[repo])
		}
		v.Summary = fmt.Sprintf("restore complete: %s checked on %s, all present with the same public keys", human.Count(keys, "backed-up key"), human.Count(len(v.HSMs), "HSM"))
		if uncompared > 0 {
			v.Summary = fmt.Sprintf("restore complete: %s checked on %s, all present; %d of them without a public key object under their CKA_ID on the token, not compared with the ceremony's record", human.Count(keys, "backed-up key"), human.Count(len(v.HSMs), "HSM"), uncompared)
		}
	default:
		missing := 0
		for _, h := range v.HSMs {
			missing += len(h.Missing) + len(h.Differs)
		}
		v.Summary = fmt.Sprintf("restore incomplete: %s missing or different on the HSMs", human.Count(missing, "backed-up key"))
		after, off := 0, 0
		for _, l := range v.Lost {
			if l.BackupNote != "" {
				off++
			} else {
				after++
			}
		}
		if after > 0 {
			v.Summary += fmt.Sprintf("; %s lost for good (handed out after the last ceremony: ods-keyguard recover plan)", human.Count(after, "key in use", "keys in use"))
		}
		if off > 0 {
			v.Summary += fmt.Sprintf("; %s lost for good (a ceremony backed them up, but no backup token holds them now: ods-keyguard recover plan)", human.Count(off, "key in use", "keys in use"))
		}
		if v.Unknown != "" {
			v.Summary = "cannot tell for certain, " + v.Unknown + ": " + v.Summary
		}
	}
	if n := len(v.Unused); n > 0 {
		v.Summary += fmt.Sprintf("; %s made after the last ceremony, never handed out, %s lost: %s", human.Count(n, "unused key"), human.Noun(n, "is", "are"), PruneAdvice)
	}
	return v
}

// PruneAdvice is the remedy for unused keys on no HSM, as assess, verify
// and check name it.
const PruneAdvice = "remove them from the enforcer's pool with ods-keyguard recover prune-pool before it starts"

func lostKey(cov ledger.Coverage, k *enforcer.Key) LostKey {
	zones := k.Zones()
	if zones == nil {
		zones = []string{}
	}
	l := LostKey{Locator: k.Locator, Repository: k.Repository, Role: k.Role.String(), Use: k.Usage(), Zones: zones, Class: Class(cov, k)}
	if c := cov.Covering(k.Repository, k.Locator); c != nil {
		l.Recoverable, l.Ceremony = true, c.ID
		if c.BackupToken != nil {
			l.BackupToken = c.BackupToken.Name
		}
	}
	return l
}

// describe names a backed-up key as the enforcer knows it now (or as the
// ceremony recorded it, when the enforcer has forgotten it).
func describe(st *enforcer.State, cov ledger.Coverage, repo string, rec ledger.KeyRecord) LostKey {
	for _, k := range st.Keys {
		if k.Repository == repo && k.Locator == rec.Locator {
			return lostKey(cov, k)
		}
	}
	zones := rec.Zones
	if zones == nil {
		zones = []string{}
	}
	return LostKey{Locator: rec.Locator, Repository: repo, Role: rec.Role, Use: "unknown to the enforcer", Zones: zones, Class: Covered, Recoverable: true}
}

// offBackup says, for a backed-up key missing on the HSMs, that no backup
// token holds it (note) or that it cannot be told (why); both "" when a
// backup token holds it, or none is configured.
func offBackup(backups []Token, rec ledger.KeyRecord) (note, why string) {
	if len(backups) == 0 {
		return "", ""
	}
	holder, read, unreadable := onBackups(backups, rec.Locator, rec.Fingerprint)
	switch {
	case holder != "":
		return "", ""
	case len(unreadable) > 0:
		return "", "backup token " + strings.Join(unreadable, " and ") + " could not be read: whether the keys missing on the HSMs are on the backup cannot be told"
	}
	return fmt.Sprintf("a ceremony recorded it as backed up, but no backup token holds it now (read: %s)", strings.Join(read, ", ")), ""
}
