package hooks

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// Severity of a finding, as monitoring reads it.
type Severity int

const (
	Warning Severity = iota + 1
	Critical
	Unknown
)

func (s Severity) String() string {
	switch s {
	case Critical:
		return "CRITICAL"
	case Unknown:
		return "UNKNOWN"
	}
	return "WARNING"
}

// MarshalText writes the severity as monitoring names it.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is something wrong with a zone's DS that check reports.
type Finding struct {
	Severity Severity `json:"state"`
	Category string   `json:"category"` // "hook" (the records) or "parent" (what the parent publishes)
	Zone     string   `json:"zone"`
	Key      string   `json:"key,omitempty"` // the key's locator, where it is about one
	Text     string   `json:"text"`
}

// Worst is what hook status exits on: Critical or Warning when something
// was found wrong (that outranks what could not be told), else Unknown when
// something could not be determined, else 0.
func Worst(zones []ZoneDS) Severity {
	var warning, unknown bool
	for _, z := range zones {
		for _, f := range z.Findings {
			switch f.Severity {
			case Critical:
				return Critical
			case Warning:
				warning = true
			case Unknown:
				unknown = true
			}
		}
	}
	switch {
	case warning:
		return Warning
	case unknown:
		return Unknown
	}
	return 0
}

// KeyDS is what the guard knows of one KSK or CSK of a zone.
type KeyDS struct {
	Role      string `json:"role"`
	KeyTag    int    `json:"keytag"`
	Algorithm int    `json:"algorithm"`
	Locator   string `json:"locator"`
	// The enforcer's view: keyData.dsAtParent and the DS record's state.
	EnforcerDS string `json:"enforcer_ds"`
	DSRecord   string `json:"ds_record"`
	Published  bool   `json:"published"` // its DNSKEY is rumoured or omnipresent
	BackedUp   bool   `json:"backed_up"`
	// The records: when its submission and retraction were forwarded,
	// whether it was adopted, and what is kept back, with why.
	Submitted *time.Time      `json:"submitted"`
	Retracted *time.Time      `json:"retracted"`
	Adopted   *time.Time      `json:"adopted"`
	Pending   *ledger.DSEntry `json:"pending"`
	// Known sums up the records: forwarded, adopted, withheld, held,
	// failed, in flight, retracted, never submitted, or not known.
	Known string `json:"known"`
	// ShouldHold: the parent should have its DS now. The enforcer wants it
	// there and it is backed up, or its retraction is held.
	ShouldHold bool `json:"should_hold"`
	// AtParent: the parent publishes a DS of it (nil: not read).
	AtParent *bool `json:"at_parent"`
}

// ZoneDS is the DS of one zone: per key, the enforcer's view, what was
// forwarded and what is kept back, and what the parent holds and should.
type ZoneDS struct {
	Zone     string         `json:"zone"`
	Keys     []KeyDS        `json:"keys"`
	Parent   *parent.Answer `json:"parent"`
	Findings []Finding      `json:"findings"`
}

// StatusInput is what Status reads.
type StatusInput struct {
	State         *enforcer.State
	Book          *ledger.DSBook
	Coverage      ledger.Coverage
	RequireBackup map[string]bool
	Parent        map[string]parent.Answer // by zone; absent when not read
	// PublicKeys are the DNSKEY public keys of KSKs and CSKs read from
	// the tokens, by lowercase locator: what a DS at the parent is matched
	// against where the records lack the key's DNSKEY line.
	PublicKeys map[string][]byte
	Now        time.Time
}

// publicKey is the public key of u's key: from a token, else from the DNSKEY
// line the records hold of it; nil when neither has it.
func (in StatusInput) publicKey(u *enforcer.Use, r *ledger.DSKey) []byte {
	if pk := in.PublicKeys[strings.ToLower(u.Key.Locator)]; len(pk) > 0 {
		return pk
	}
	return publicKeyOf(r)
}

// Status puts the enforcer's view of each zone's DS beside the records and,
// where it was read, the parent's DS set, and says what is wrong.
func Status(in StatusInput) []ZoneDS {
	var out []ZoneDS
	for _, z := range in.State.Zones {
		out = append(out, zoneStatus(in, z))
	}
	// Pending entries of zones the enforcer no longer has.
	have := map[string]bool{}
	for _, z := range in.State.Zones {
		have[strings.ToLower(z.Name)] = true
	}
	orphans := map[string]*ZoneDS{}
	for _, e := range in.Book.Pending {
		if have[e.Zone] {
			continue
		}
		zs := orphans[e.Zone]
		if zs == nil {
			zs = &ZoneDS{Zone: e.Zone, Keys: []KeyDS{}, Findings: []Finding{}}
			orphans[e.Zone] = zs
		}
		zs.Findings = append(zs.Findings, pendingFinding(e))
	}
	// DS that zones the enforcer deleted left at the parent.
	for _, n := range GoneZones(in.State, in.Book) {
		zs := orphans[n]
		if zs == nil {
			zs = &ZoneDS{Zone: n, Keys: []KeyDS{}, Findings: []Finding{}}
			orphans[n] = zs
		}
		if a, ok := in.Parent[n]; ok {
			zs.Parent = &a
		}
		goneFindings(zs, goneKeys(in.Book, n))
	}
	for _, n := range slices.Sorted(maps.Keys(orphans)) {
		out = append(out, *orphans[n])
	}
	return out
}

func zoneStatus(in StatusInput, z *enforcer.Zone) ZoneDS {
	zs := ZoneDS{Zone: z.Name, Keys: []KeyDS{}, Findings: []Finding{}}
	if a, ok := in.Parent[strings.ToLower(z.Name)]; ok {
		zs.Parent = &a
	}
	add := func(s Severity, cat, format string, args ...any) {
		zs.Findings = append(zs.Findings, Finding{Severity: s, Category: cat, Zone: z.Name, Text: fmt.Sprintf(format, args...)})
	}
	// addKey adds a finding about one key.
	addKey := func(key string, s Severity, cat, format string, args ...any) {
		zs.Findings = append(zs.Findings, Finding{Severity: s, Category: cat, Zone: z.Name, Key: key, Text: fmt.Sprintf(format, args...)})
	}
	for _, u := range z.Keys {
		if u.Role == enforcer.ZSK {
			continue
		}
		k := KeyDS{Role: u.Role.String(), KeyTag: u.KeyTag, Algorithm: u.Key.Algorithm, Locator: u.Key.Locator,
			EnforcerDS: u.DSAtParent.String(), DSRecord: recordState(u, enforcer.RecordDS),
			Published: live(u, enforcer.RecordDNSKEY),
			BackedUp:  in.Coverage != nil && rules.BackedUp(in.Coverage, in.RequireBackup, u.Key)}
		r := in.Book.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
		if r != nil {
			k.Submitted, k.Retracted, k.Adopted = stamp(r.Submitted), stamp(r.Retracted), stamp(r.Adopted)
			if e := in.Book.PendingFor(ledger.Submit, r); e != nil {
				k.Pending = e
			}
			if e := in.Book.PendingFor(ledger.Retract, r); e != nil {
				k.Pending = e
			}
		}
		wanted := u.DSAtParent == enforcer.DSSubmit || u.DSAtParent == enforcer.DSSubmitted || u.DSAtParent == enforcer.DSSeen
		k.Known = known(in.Book, r, k.Pending, wanted)
		k.ShouldHold = (wanted && k.BackedUp) || (k.Pending != nil && k.Pending.Kind == ledger.Retract)
		if zs.Parent != nil && zs.Parent.Err == nil {
			at, unsure := false, false
			for _, ds := range zs.Parent.DS {
				m, known := ds.Match(z.Name, u.KeyTag, u.Key.Algorithm, in.publicKey(u, r))
				at = at || m
				unsure = unsure || !known
			}
			if at || !unsure {
				k.AtParent = &at
			} else {
				addKey(k.Locator, Unknown, "parent", "zone %s: the parent has a DS with the key tag of %s %d (key %s), but whether it is that key's cannot be told: its public key is on no token read and in no record",
					z.Name, k.Role, k.KeyTag, k.Locator)
			}
		}
		if k.Known == "not known" && (u.DSAtParent == enforcer.DSSubmitted || u.DSAtParent == enforcer.DSSeen) && (k.AtParent == nil || !*k.AtParent) {
			addKey(k.Locator, Warning, "hook", "%s %d (key %s): the enforcer has its DS %s, but ods-keyguard has no record of forwarding it: not known to be at the parent (hook release decides it again)",
				k.Role, k.KeyTag, k.Locator, u.DSAtParent)
		}
		if r != nil && !r.InFlight.IsZero() {
			addKey(k.Locator, Warning, "hook", "the forward of %s %d (key %s) began %s and has no outcome recorded: whether the parent got it is not known",
				k.Role, k.KeyTag, k.Locator, r.InFlight.Format(time.RFC3339))
		}
		zs.Keys = append(zs.Keys, k)
	}
	for _, e := range in.Book.Pending {
		if !strings.EqualFold(e.Zone, z.Name) {
			continue
		}
		zs.Findings = append(zs.Findings, pendingFinding(e))
		// Only a retraction held for its successor keeps a DS on purpose
		// (heldReason): one held because its key is unknown to the
		// enforcer kept nothing the records know to be at the parent.
		if e.Kind != ledger.Retract || e.Action != ledger.Held || e.Locator == "" {
			continue
		}
		// The old DS is kept so the chain of trust goes through the old key:
		// once the enforcer withdraws that key's DNSKEY, the kept DS points at
		// nothing and validators fail the zone.
		if u := useOf(z, e); u == nil || !live(u, enforcer.RecordDNSKEY) {
			state := "purged it"
			if u != nil {
				state = "its DNSKEY " + recordState(u, enforcer.RecordDNSKEY)
			}
			addKey(e.Locator, Critical, "hook", "the parent keeps the DS of key tag %d (its retraction held for the successor), but the enforcer has %s: the DS points at no published key and the zone fails validation; back the successor up now (ods-keyguard backup prepare, then backup done): its DS goes, then this retraction",
				e.KeyTag, state)
		}
	}
	if zs.Parent != nil {
		parentFindings(&zs, z, in, add)
	}
	return zs
}

// useOf finds the enforcer's use of an entry's key in zone z.
func useOf(z *enforcer.Zone, e *ledger.DSEntry) *enforcer.Use {
	for _, u := range z.Keys {
		if u.Role == enforcer.ZSK {
			continue
		}
		if e.Locator != "" && strings.EqualFold(u.Key.Locator, e.Locator) {
			return u
		}
		if e.Locator == "" && u.KeyTag == e.KeyTag && (e.Algorithm == 0 || u.Key.Algorithm == e.Algorithm) {
			return u
		}
	}
	return nil
}

// HoldAdvice is what every message about a retraction held for its
// successor tells the operator: the DS is kept on purpose, and removing it
// by hand (or telling the enforcer ds-gone) breaks the chain of trust.
const HoldAdvice = "do not remove that DS at the registrar by hand, nor run ods-enforcer key ds-gone for it: it is the zone's chain of trust until its successor's DS is at the parent, and then ods-keyguard retracts it (hook release)"

// heldReason is a held retraction's reason as messages give it: with
// HoldAdvice when it is held for its successor. DecideRetract holds a
// retraction with its key known (locator) for no other cause; one held
// because its key or zone is not in the enforcer, or the facts could not
// be read, has no successor to wait for, and its reason says what to do.
func heldReason(reason, locator string) string {
	if locator == "" {
		return reason
	}
	return reason + "; " + HoldAdvice
}

func pendingFinding(e *ledger.DSEntry) Finding {
	what := fmt.Sprintf("%s for zone %s key tag %d", e.Kind, e.Zone, e.KeyTag)
	var text string
	switch e.Action {
	case ledger.Held:
		text = fmt.Sprintf("%s held by ods-keyguard since %s: %s",
			what, e.Since.Format(human.Minute), heldReason(e.Reason, e.Locator))
	default:
		text = fmt.Sprintf("%s withheld since %s: %s (ods-keyguard hook pending; hook release sends what is covered)",
			what, e.Since.Format(human.Minute), e.Reason)
	}
	return Finding{Severity: Warning, Category: "hook", Zone: e.Zone, Key: e.Locator, Text: text}
}

func parentFindings(zs *ZoneDS, z *enforcer.Zone, in StatusInput, add func(Severity, string, string, ...any)) {
	a := zs.Parent
	if a.Err != nil {
		add(Unknown, "parent", "cannot read the DS of zone %s: %v", z.Name, a.Err)
		return
	}
	if len(a.Disagree) > 0 {
		add(Warning, "parent", "zone %s: the parent's servers disagree on its DS (%s answered otherwise than %s)", z.Name, strings.Join(a.Disagree, ", "), a.Source)
	}
	if len(a.DS) == 0 {
		for _, k := range zs.Keys {
			if k.Submitted != nil && k.Retracted == nil && k.ShouldHold {
				add(Warning, "parent", "zone %s: the parent has no DS, though the DS of %s %d was forwarded %s: the forward did not reach the registry?",
					z.Name, k.Role, k.KeyTag, k.Submitted.Format(time.RFC3339))
			}
		}
		return
	}
	chain, unsure := false, false
	var tags []string
	for _, ds := range a.DS {
		tags = append(tags, fmt.Sprintf("%d/%d", ds.KeyTag, ds.Algorithm))
		var match, tagOnly *enforcer.Use
		for _, u := range z.Keys {
			if u.Role == enforcer.ZSK {
				continue
			}
			r := in.Book.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
			m, known := ds.Match(z.Name, u.KeyTag, u.Key.Algorithm, in.publicKey(u, r))
			if m {
				match = u
				break
			}
			if !known {
				tagOnly = u
			}
		}
		switch {
		case match == nil && tagOnly != nil:
			unsure = true // said per key above
		case match == nil && hasTag(z, ds.KeyTag, ds.Algorithm):
			add(Critical, "parent", "zone %s: the parent has DS %d/%d %d %s, whose digest matches no DNSKEY of the zone's keys with that key tag: a wrong or forged DS", z.Name, ds.KeyTag, ds.Algorithm, ds.DigestType, ds.Digest)
		case match == nil:
			add(Warning, "parent", "zone %s: the parent has DS %d/%d, of no key the enforcer has for the zone", z.Name, ds.KeyTag, ds.Algorithm)
		case match.DSAtParent == enforcer.DSRetract || match.DSAtParent == enforcer.DSRetracted || match.DSAtParent == enforcer.DSUnsubmitted:
			r := in.Book.Find(z.Name, match.Key.Locator, match.KeyTag, match.Key.Algorithm)
			if e := in.Book.PendingFor(ledger.Retract, r); r != nil && e != nil && e.Action == ledger.Held {
				add(Warning, "parent", "zone %s: the parent has the DS of %s %d (key %s), which the enforcer has %s: ods-keyguard holds that retraction on purpose (%s); %s",
					z.Name, match.Role, match.KeyTag, match.Key.Locator, match.DSAtParent, e.Reason, HoldAdvice)
				break
			}
			add(Warning, "parent", "zone %s: the parent has the DS of %s %d (key %s), which the enforcer has %s", z.Name, match.Role, match.KeyTag, match.Key.Locator, match.DSAtParent)
		case !rules.BackedUp(in.Coverage, in.RequireBackup, match.Key):
			add(Warning, "parent", "zone %s: the parent has the DS of %s %d (key %s), which is not backed up: %s", z.Name, match.Role, match.KeyTag, match.Key.Locator,
				rules.NotBackedUp(in.Coverage, in.RequireBackup, match.Key))
		}
		if match != nil && live(match, enforcer.RecordDNSKEY) && rules.BackedUp(in.Coverage, in.RequireBackup, match.Key) {
			chain = true
		}
	}
	if !chain && unsure {
		add(Unknown, "parent", "zone %s: whether a DS at the parent (%s) matches a published, backed-up KSK cannot be told: a public key is missing (see above)",
			z.Name, strings.Join(tags, ", "))
	} else if !chain {
		add(Critical, "parent", "zone %s: no DS at the parent (%s) matches a published, backed-up KSK: the chain of trust is broken, or rests on a key with no backup",
			z.Name, strings.Join(tags, ", "))
	}
}

// hasTag says whether z has a KSK or CSK with that key tag and algorithm.
func hasTag(z *enforcer.Zone, keytag, algorithm int) bool {
	for _, u := range z.Keys {
		if u.Role != enforcer.ZSK && u.KeyTag == keytag && u.Key.Algorithm == algorithm {
			return true
		}
	}
	return false
}

// known sums up what the records say of a key's DS.
func known(b *ledger.DSBook, r *ledger.DSKey, pending *ledger.DSEntry, wanted bool) string {
	switch {
	case pending != nil && pending.Action == ledger.Failed:
		return "failed"
	case pending != nil:
		return pending.Action
	case r != nil && !r.InFlight.IsZero():
		return "in flight"
	case r != nil && !r.Retracted.IsZero() && !r.AtParent():
		return "retracted"
	case r != nil && !r.Adopted.IsZero() && r.AtParent() && r.Submitted.IsZero():
		return "adopted"
	case r != nil && r.AtParent():
		return "forwarded"
	case !wanted:
		return "never submitted"
	case b.Created.IsZero():
		return "before the records"
	}
	return "not known"
}

func publicKeyOf(r *ledger.DSKey) []byte {
	if r == nil || r.Line == "" {
		return nil
	}
	return ParseLine(r.Line).PublicKey
}

func recordState(u *enforcer.Use, t enforcer.RecordType) string {
	if s, ok := u.States[t]; ok {
		return s.String()
	}
	return "-"
}

func live(u *enforcer.Use, t enforcer.RecordType) bool {
	s, ok := u.States[t]
	return ok && (s == enforcer.Rumoured || s == enforcer.Omnipresent)
}

func stamp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Findings gathers the findings of every zone, worst first.
func Findings(zones []ZoneDS) []Finding {
	var out []Finding
	for _, z := range zones {
		out = append(out, z.Findings...)
	}
	rank := map[Severity]int{Critical: 0, Unknown: 1, Warning: 2}
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Severity] < rank[out[j].Severity] })
	return out
}

// inRecords says whether the DS records know zone.
func inRecords(b *ledger.DSBook, zone string) bool {
	for _, k := range b.Keys() {
		if k.Zone == zone {
			return true
		}
	}
	return false
}

// StatusSources are what ReadStatus reads.
type StatusSources struct {
	Source        inventory.Source // the enforcer's database and the tokens
	Ledger        *ledger.Ledger
	RequireBackup map[string]bool
	Parent        parent.Config
	// Tokens are read, with the parent configured, for the public keys
	// of the zones' KSKs and CSKs: a DS matches a key only by digest.
	Tokens []hsmcheck.Token
}

// SEPKeys lists the locators of st's KSKs and CSKs, sorted, once each.
func SEPKeys(st *enforcer.State) []string {
	seen := map[string]bool{}
	var out []string
	for _, z := range st.Zones {
		for _, u := range z.Keys {
			if u.Role != enforcer.ZSK && !seen[strings.ToLower(u.Key.Locator)] {
				seen[strings.ToLower(u.Key.Locator)] = true
				out = append(out, strings.ToLower(u.Key.Locator))
			}
		}
	}
	sort.Strings(out)
	return out
}

// PublicKeys gathers the public keys that token reads found, by lowercase
// locator.
func PublicKeys(results []hsmcheck.Result) map[string][]byte {
	out := map[string][]byte{}
	for _, r := range results {
		if r.Contents == nil {
			continue
		}
		for _, k := range r.Contents.Keys {
			if len(k.PublicKey) > 0 {
				out[strings.ToLower(k.ID)] = k.PublicKey
			}
		}
	}
	return out
}

// ReadStatus reads the enforcer, the ceremonies, the DS records and, where
// [parent] is configured, the parent's DS sets, and puts each zone's DS
// side by side; zone, when not "", limits it to that zone.
func ReadStatus(ctx context.Context, src StatusSources, zone string) ([]ZoneDS, error) {
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	st, err := src.Source.State(ctx)
	if err != nil {
		return nil, err
	}
	store, err := src.Ledger.Ceremonies(ctx)
	if err != nil {
		return nil, err
	}
	book, err := src.Ledger.DS(ctx)
	if err != nil {
		return nil, err
	}
	// The parent is asked about the zones shown only; the rest is reckoned
	// in memory, and the zones not asked for are left out at the end.
	names := append(st.ZoneNames(), GoneZones(st, book)...)
	if zone != "" {
		names = nil
		for _, z := range st.Zones {
			if strings.EqualFold(z.Name, zone) {
				names = append(names, z.Name)
			}
		}
		if len(names) == 0 && !inRecords(book, zone) {
			return nil, fmt.Errorf("zone %q: not in the enforcer's database, nor in the DS records", zone)
		}
		if len(names) == 0 {
			names = []string{zone}
		}
	}
	in := StatusInput{State: st, Book: book, Coverage: store.Coverage(), RequireBackup: src.RequireBackup, Now: time.Now().UTC()}
	done := make(chan map[string]parent.Answer, 1)
	go func() { done <- parent.ByZone(ctx, src.Parent, names) }()
	if src.Parent.Enabled() {
		var tokens []hsmcheck.Token
		for _, t := range src.Tokens {
			if t.Kind != hsmcheck.KindBackupToken {
				tokens = append(tokens, t)
			}
		}
		if ids := SEPKeys(st); len(ids) > 0 && len(tokens) > 0 {
			in.PublicKeys = PublicKeys(src.Source.Tokens(ctx, tokens, hsmcheck.Request{IDs: ids}))
		}
	}
	in.Parent = <-done
	zones := Status(in)
	if zone != "" {
		keep := zones[:0]
		for _, z := range zones {
			if strings.EqualFold(z.Zone, zone) {
				keep = append(keep, z)
			}
		}
		zones = keep
	}
	return zones, nil
}
