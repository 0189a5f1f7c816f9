package ledger

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// What the enforcer asked of a DS hook.
const (
	Submit  = "ds-submit"
	Retract = "ds-retract"
)

// What became of it: the actions of DS events.
const (
	Withheld   = "withheld"   // a submission kept back: no verified backup, or it could not be decided
	Held       = "held"       // a retraction kept back while the successor's DS is withheld
	Forwarding = "forwarding" // the forward command is about to run (recorded before acting)
	Forwarded  = "forwarded"  // the forward command succeeded
	Failed     = "failed"     // the forward command failed: kept back
	Dropped    = "dropped"    // settled without forwarding: no longer wanted, or on purpose
	Skipped    = "skipped"    // a retraction not forwarded: its DS never went to the parent
	Rejected   = "rejected"   // input that is not a usable DNSKEY
	Adopted    = "adopted"    // at the parent before ods-keyguard recorded DS submissions
	Settled    = "settled"    // a DS of a zone the enforcer no longer has, settled by the operator by hand
	Created    = "created"    // the DS records begin

	// parent sync's: what the parent's servers serve, told to the enforcer.
	Seen       = "seen"       // every parent server serves the DS: ods-enforcer key ds-seen was run
	Vanished   = "vanished"   // no parent server serves the DS any more: its TTL runs from now
	Reappeared = "reappeared" // a DS seen vanished is served again: the TTL starts over when it goes
	Gone       = "gone"       // gone from every server for its TTL: ods-enforcer key ds-gone was run
)

// DSEvent is one thing that happened to a DS submission or retraction.
// Events are only ever added; what is pending is derived from them.
type DSEvent struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Host        string    `json:"host,omitempty"`
	Kind        string    `json:"kind,omitempty"` // Submit or Retract
	Action      string    `json:"action"`
	Zone        string    `json:"zone,omitempty"`
	KeyTag      int       `json:"keytag,omitempty"`
	Algorithm   int       `json:"algorithm,omitempty"`
	Locator     string    `json:"locator,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"` // SHA-256 of the DNSKEY public key
	Line        string    `json:"line,omitempty"`        // the DNSKEY line as the enforcer sent it
	Reason      string    `json:"reason,omitempty"`
	By          string    `json:"by,omitempty"` // the hook, release, parent sync, or the operator who dropped it
	// Parent is what each parent server served, for parent sync's events:
	// "SERVER: DS ..." or "SERVER: no DS".
	Parent []string `json:"parent,omitempty"`
}

// NewEvent stamps an event with a fresh id, the time and this host.
func NewEvent(e DSEvent) DSEvent {
	stamp(&e.ID, &e.Time, &e.Host)
	return e
}

// stamp gives a record that has none a fresh id, the time and this host.
func stamp(id *string, t *time.Time, h *string) {
	if t.IsZero() {
		*t = time.Now().UTC()
	}
	if *id == "" {
		var r [6]byte
		rand.Read(r[:])
		*id = t.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(r[:])
	}
	if *h == "" {
		*h = host()
	}
}

// EntryID names what an event is about: one kind of request for one key of
// one zone. Pending entries are listed, and dropped, by it.
func EntryID(kind, zone, fingerprint string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + strings.ToLower(zone) + "\x00" + fingerprint))
	return hex.EncodeToString(sum[:8])
}

func (e DSEvent) entry() string {
	if e.Kind == "" || e.Zone == "" || e.Fingerprint == "" {
		return ""
	}
	return EntryID(e.Kind, e.Zone, e.Fingerprint)
}

// mergeEvents drops repeated ids (a spool file folded in twice) and sorts by
// time.
func mergeEvents(evs []DSEvent) []DSEvent {
	seen := map[string]bool{}
	out := make([]DSEvent, 0, len(evs))
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// DSEntry is a request that is still kept back: a withheld submission, a
// held retraction, or one whose forward failed.
type DSEntry struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Action      string    `json:"action"` // withheld, held or failed
	Zone        string    `json:"zone"`
	KeyTag      int       `json:"keytag"`
	Algorithm   int       `json:"algorithm,omitempty"`
	Locator     string    `json:"locator,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Line        string    `json:"line"`
	Since       time.Time `json:"since"`
	Updated     time.Time `json:"updated"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts"` // forwards tried and failed
}

// DSKey is what the records say of one key of one zone.
type DSKey struct {
	Zone        string
	KeyTag      int
	Algorithm   int
	Locator     string
	Fingerprint string
	Line        string
	Submitted   time.Time // the last forwarded submission
	Retracted   time.Time // the last forwarded retraction
	Adopted     time.Time // at the parent before the records began
	Settled     time.Time // settled by the operator after its zone left the enforcer
	// InFlight is a forward that began and has no outcome recorded (the
	// process died meanwhile): whether the parent got it is not known.
	InFlight time.Time
	// Vanished is when parent sync first found its DS on no parent server
	// (since it last saw it served); zero when it did not, or saw it again.
	Vanished time.Time
	// Seen and Gone are when parent sync last told the enforcer ds-seen
	// and ds-gone of it.
	Seen, Gone time.Time
	Events     []DSEvent
}

// AtParent says whether the records have this key's DS at the parent: a
// submission forwarded (or adopted) after the last forwarded retraction.
func (k *DSKey) AtParent() bool {
	last := k.Since()
	return !last.IsZero() && last.After(k.Retracted)
}

// Since is when the records last put this key's DS at the parent: its
// last forwarded submission, or its adoption; zero when neither.
func (k *DSKey) Since() time.Time {
	if k.Adopted.After(k.Submitted) {
		return k.Adopted
	}
	return k.Submitted
}

// DSBook is the DS records read at once: events, pending entries, and per
// key what was forwarded.
type DSBook struct {
	Events   []DSEvent
	Pending  []*DSEntry // oldest first
	Rejected []DSEvent
	// Refused names the spool files that were not read (see Refused).
	Refused []Refused
	// Created is when the records began; zero when no hook recorded
	// anything yet (everything at the parent then predates them).
	Created time.Time
	keys    map[string]*DSKey // zone \x00 fp:fingerprint, and zone \x00 loc:locator
	order   []*DSKey
}

// Book derives the pending entries and the per-key facts from events.
func Book(evs []DSEvent) *DSBook {
	b := &DSBook{Events: evs, keys: map[string]*DSKey{}}
	open := map[string]*DSEntry{}
	var order []string
	for _, e := range evs {
		switch e.Action {
		case Created:
			if b.Created.IsZero() {
				b.Created = e.Time
			}
			continue
		case Rejected:
			b.Rejected = append(b.Rejected, e)
			continue
		}
		if e.Zone == "" || (e.Fingerprint == "" && e.Locator == "") {
			continue
		}
		k := b.key(e)
		k.Events = append(k.Events, e)
		id := e.entry()
		switch e.Action {
		case Withheld, Held, Failed:
			en := open[id]
			if en == nil {
				en = &DSEntry{ID: id, Kind: e.Kind, Zone: e.Zone, Fingerprint: e.Fingerprint, Since: e.Time}
				open[id] = en
				order = append(order, id)
			}
			en.Action, en.Updated, en.Reason = e.Action, e.Time, e.Reason
			en.KeyTag, en.Algorithm = e.KeyTag, e.Algorithm
			if e.Locator != "" {
				en.Locator = e.Locator
			}
			if e.Line != "" {
				en.Line = e.Line
			}
			if e.Action == Failed {
				en.Attempts++
			}
		case Forwarding:
			k.InFlight = e.Time
		case Forwarded:
			k.InFlight = time.Time{}
			if e.Kind == Submit {
				k.Submitted = e.Time
			} else {
				k.Retracted = e.Time
			}
			delete(open, id)
		case Dropped, Skipped:
			delete(open, id)
		case Adopted:
			k.Adopted = e.Time
		case Settled:
			k.Settled = e.Time
		case Vanished:
			if k.Vanished.IsZero() {
				k.Vanished = e.Time
			}
		case Reappeared:
			k.Vanished = time.Time{}
		case Seen:
			k.Seen = e.Time
		case Gone:
			k.Gone = e.Time
		}
		if e.Kind == Submit && (e.Action == Forwarded || e.Action == Adopted) {
			k.Vanished = time.Time{} // put at the parent again: a new life
		}
		if e.Action == Failed {
			k.InFlight = time.Time{}
		}
	}
	for _, id := range order {
		if en := open[id]; en != nil {
			b.Pending = append(b.Pending, en)
			delete(open, id) // listed once
		}
	}
	// Oldest first: by when each was kept back, whatever older events of
	// the same request compaction dropped.
	sort.SliceStable(b.Pending, func(i, j int) bool { return b.Pending[i].Since.Before(b.Pending[j].Since) })
	return b
}

// key returns the record of e's key, made on first sight. A key is known
// by its public key's fingerprint (what a hook reads) and by its locator
// (what the enforcer's database says); an event that carries both joins
// the two.
func (b *DSBook) key(e DSEvent) *DSKey {
	zone := strings.ToLower(e.Zone)
	byFP, byLoc := zone+"\x00fp:"+e.Fingerprint, zone+"\x00loc:"+strings.ToLower(e.Locator)
	var k *DSKey
	if e.Fingerprint != "" {
		k = b.keys[byFP]
	}
	if k == nil && e.Locator != "" {
		k = b.keys[byLoc]
		if k != nil && k.Fingerprint != "" && e.Fingerprint != "" && k.Fingerprint != e.Fingerprint {
			k = nil // another key pair under the same locator
		}
	}
	if k == nil {
		k = &DSKey{Zone: zone}
		b.order = append(b.order, k)
	}
	if e.Fingerprint != "" {
		k.Fingerprint = e.Fingerprint
		b.keys[byFP] = k
	}
	if e.Locator != "" {
		k.Locator = strings.ToLower(e.Locator)
		b.keys[byLoc] = k
	}
	if e.KeyTag != 0 {
		k.KeyTag = e.KeyTag
	}
	if e.Algorithm != 0 {
		k.Algorithm = e.Algorithm
	}
	if e.Line != "" {
		k.Line = e.Line
	}
	return k
}

// Unsettled says whether the records have this key's DS at the parent and
// no operator settled it since it went there.
func (k *DSKey) Unsettled() bool {
	return k.AtParent() && !k.Settled.After(k.Since())
}

// NeverForwarded says whether the records know that this key's DS never
// went to the parent: a submission withheld, and none forwarded, tried or
// adopted.
func (k *DSKey) NeverForwarded() bool {
	withheld := false
	for _, e := range k.Events {
		if e.Kind != Submit {
			continue
		}
		switch e.Action {
		case Withheld:
			withheld = true
		case Forwarding, Forwarded, Failed, Adopted:
			return false
		}
	}
	return withheld
}

// Keys lists what the records say per key, in order of first record.
func (b *DSBook) Keys() []*DSKey { return b.order }

// Find returns the records of a key of zone: by locator where the records
// know it, else by key tag (and algorithm, when given). Nil: none.
func (b *DSBook) Find(zone, locator string, keytag, algorithm int) *DSKey {
	zone = strings.ToLower(zone)
	var byTag *DSKey
	for _, k := range b.order {
		if k.Zone != zone {
			continue
		}
		if locator != "" && strings.EqualFold(k.Locator, locator) {
			return k
		}
		if k.KeyTag == keytag && (algorithm == 0 || k.Algorithm == 0 || k.Algorithm == algorithm) &&
			(k.Locator == "" || locator == "") {
			byTag = k
		}
	}
	return byTag
}

// Entry returns the pending entry with id, or nil.
func (b *DSBook) Entry(id string) *DSEntry {
	for _, e := range b.Pending {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// PendingFor returns the pending entry of kind for the key k, or nil.
func (b *DSBook) PendingFor(kind string, k *DSKey) *DSEntry {
	if k == nil || k.Fingerprint == "" {
		return nil
	}
	return b.Entry(EntryID(kind, k.Zone, k.Fingerprint))
}

// legacyEntry is a record of pending.json, as ods-keyguard kept withheld
// submissions before the DS records.
type legacyEntry struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Zone     string    `json:"zone,omitempty"`
	KeyTag   int       `json:"keytag,omitempty"`
	Locator  string    `json:"locator,omitempty"`
	Line     string    `json:"line"`
	Received time.Time `json:"received"`
	Updated  time.Time `json:"updated"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
}

// importLegacy turns pending.json's entries into events, with ids derived
// from theirs so that importing twice adds nothing. An entry that is no
// DNSKEY becomes rejected input, not a pending entry.
func importLegacy(list []legacyEntry) []DSEvent {
	var out []DSEvent
	for _, p := range list {
		e := DSEvent{ID: "legacy-" + p.ID, Time: p.Received, Kind: p.Kind, Zone: p.Zone, KeyTag: p.KeyTag,
			Locator: p.Locator, Line: p.Line, Reason: p.Reason, Action: Withheld, By: "pending.json"}
		e.Fingerprint, e.Algorithm = lineKey(p.Line)
		switch {
		case p.Zone == "" || e.Fingerprint == "":
			e.Action, e.Kind, e.Line = Rejected, "", QuoteInput([]byte(p.Line))
		case strings.HasPrefix(p.Reason, "forward command failed"):
			e.Action = Failed
		case p.Kind == Retract:
			e.Action = Held
		}
		out = append(out, e)
	}
	return out
}

// lineKey reads the public key's fingerprint and the algorithm from a
// DNSKEY line in the enforcer's form: OWNER TTL IN DNSKEY FLAGS 3 ALG KEY,
// for entries of pending.json from before the DS events. The fingerprint
// is hsmcheck.FingerprintDNSKEY's (the ledger does not link PKCS#11).
func lineKey(line string) (fingerprint string, algorithm int) {
	text, _, _ := strings.Cut(line, ";")
	f := strings.Fields(text)
	if len(f) < 8 || !strings.EqualFold(f[3], "DNSKEY") {
		return "", 0
	}
	pub, err := base64.StdEncoding.DecodeString(strings.Join(f[7:], ""))
	if err != nil || len(pub) == 0 {
		return "", 0
	}
	fmt.Sscan(f[6], &algorithm)
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:]), algorithm
}

// maxQuoted bounds what a record quotes of input that is no DNSKEY.
const maxQuoted = 64

// QuoteInput is the first bytes of input, escaped, for a record or a log
// line: never more than maxQuoted bytes, never a control character.
func QuoteInput(b []byte) string {
	more := ""
	if len(b) > maxQuoted {
		b, more = b[:maxQuoted], fmt.Sprintf("... (%d bytes)", len(b))
	}
	q := fmt.Sprintf("%+q", b)
	return q + more
}

// settledFor is how long a key's records are kept once nothing about it is
// open: a year of KSK rollovers and a little more.
const settledFor = 400 * 24 * time.Hour

// settled says whether k's records decide nothing any more.
func settled(b *DSBook, k *DSKey, now time.Time) bool {
	if k.AtParent() || !k.InFlight.IsZero() || now.Sub(k.Events[len(k.Events)-1].Time) < settledFor {
		return false
	}
	for _, kind := range []string{Submit, Retract} {
		if b.PendingFor(kind, k) != nil {
			return false
		}
	}
	return true
}

// maxEvents bounds the DS records that compaction keeps: every event that
// still decides something (see needed), then the newest others up to this
// many in all. syslog keeps every event; the records keep what decides.
const maxEvents = 10000

// bound returns evs (merged, oldest first) cut to maxEvents where it can
// be: every needed event is kept, whatever their number, so that the DS
// records read the same after compaction (the same pending entries, the
// same per-key facts); the others are dropped oldest first.
func bound(evs []DSEvent, max int, now time.Time) []DSEvent {
	if len(evs) <= max {
		return evs
	}
	keep := needed(evs, now)
	room := max - len(keep)
	for i := len(evs) - 1; i >= 0 && room > 0; i-- {
		if !keep[evs[i].ID] {
			keep[evs[i].ID] = true
			room--
		}
	}
	out := make([]DSEvent, 0, len(keep))
	for _, e := range evs {
		if keep[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

// needed names the events that Book reads facts from: the first event of
// the records; per key, its last forwarded submission and retraction, its
// adoption and settlement, a forward begun and not ended, the first
// withheld submission of a key never forwarded, the last event carrying its
// DNSKEY line and the last joining its locator to its public key; per entry
// kept back, the first and the last event since it was last settled and
// every failed forward since (the attempts); the last 100 rejected inputs.
// A key settled for good (nothing kept back, its DS not at the parent by the
// records, no forward unfinished) whose last event is older than settledFor
// needs none: it decides nothing any more.
func needed(evs []DSEvent, now time.Time) map[string]bool {
	keep := map[string]bool{}
	rejected := 0
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].Action {
		case Created:
			// the first one is kept below
		case Rejected:
			if rejected < 100 {
				keep[evs[i].ID] = true
				rejected++
			}
		}
	}
	for _, e := range evs {
		if e.Action == Created {
			keep[e.ID] = true
			break
		}
	}
	b := Book(evs)
	for _, k := range b.order {
		ev := k.Events
		if settled(b, k, now) {
			continue
		}
		last := map[string]int{} // what -> position in ev
		firstWithheld := -1
		run := map[string][]int{} // entry -> positions of its current run
		// The first event makes the key, in its place among the keys; the
		// first with a public key and the first with a locator give it
		// the names it is found by.
		keep[ev[0].ID] = true
		firstFP, firstLoc := false, false
		for i, e := range ev {
			if e.Fingerprint != "" && !firstFP {
				firstFP = true
				keep[e.ID] = true
			}
			if e.Locator != "" && !firstLoc {
				firstLoc = true
				keep[e.ID] = true
			}
			switch e.Action {
			case Forwarded:
				last["forwarded "+e.Kind] = i
				last["ended"] = i
			case Failed:
				last["ended"] = i
			case Forwarding:
				last["forwarding"] = i
			case Adopted, Settled, Vanished, Reappeared, Seen, Gone:
				last[e.Action] = i
			}
			switch {
			case e.Kind == Submit && (e.Action == Forwarding || e.Action == Forwarded || e.Action == Failed || e.Action == Adopted):
				last["sent"] = i // the key was forwarded once: not "never forwarded"
			case e.Action == Withheld:
				if e.Kind == Submit && firstWithheld < 0 {
					firstWithheld = i
				}
			}
			if e.Line != "" {
				last["line"] = i
			}
			if e.Locator != "" && e.Fingerprint != "" {
				last["join"] = i
			}
			id := e.entry()
			switch e.Action {
			case Withheld, Held, Failed:
				run[id] = append(run[id], i)
			case Forwarded, Dropped, Skipped:
				delete(run, id)
			}
		}
		for what, i := range last {
			ended, hasEnded := last["ended"]
			if what == "ended" || what == "line" || what == "join" || (what == "forwarding" && hasEnded && ended > i) {
				continue // a forward that ended since is not in flight
			}
			keep[ev[i].ID] = true
		}
		if k.NeverForwarded() && firstWithheld >= 0 {
			keep[ev[firstWithheld].ID] = true
		}
		for _, pos := range run {
			// Since (the first), the state and reason (the last), the last
			// locator and line the entry carries, and every failed forward
			// (its attempts).
			keep[ev[pos[0]].ID] = true
			keep[ev[pos[len(pos)-1]].ID] = true
			loc, line := -1, -1
			for _, i := range pos {
				if ev[i].Locator != "" {
					loc = i
				}
				if ev[i].Line != "" {
					line = i
				}
				if ev[i].Action == Failed {
					keep[ev[i].ID] = true
				}
			}
			if loc >= 0 {
				keep[ev[loc].ID] = true
			}
			if line >= 0 {
				keep[ev[line].ID] = true
			}
		}
		// The key's DNSKEY (its public key: the same in every line) and the
		// join of its locator to it, unless a kept event has them already.
		hasLine, hasJoin := false, false
		for _, e := range ev {
			if keep[e.ID] {
				hasLine = hasLine || e.Line != ""
				hasJoin = hasJoin || (e.Locator != "" && e.Fingerprint != "")
			}
		}
		if i, ok := last["line"]; ok && !hasLine {
			keep[ev[i].ID] = true
		}
		if i, ok := last["join"]; ok && !hasJoin {
			keep[ev[i].ID] = true
		}
		// An older event kept for one of the reasons above must not open
		// again what was settled after it: the event that settled it is
		// kept too (and a forward begun then, its end).
		for i, e := range ev {
			if !keep[e.ID] {
				continue
			}
			switch e.Action {
			case Withheld, Held, Failed:
				for j := i + 1; j < len(ev); j++ {
					if ev[j].entry() == e.entry() && (ev[j].Action == Forwarded || ev[j].Action == Dropped || ev[j].Action == Skipped) {
						keep[ev[j].ID] = true
						break
					}
				}
			}
			if e.Action == Forwarding {
				for j := i + 1; j < len(ev); j++ {
					if ev[j].Action == Forwarded || ev[j].Action == Failed {
						keep[ev[j].ID] = true
						break
					}
				}
			}
		}
	}
	return keep
}
