package publish

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// The gate's state, per host, in state_dir/publish (through statedir only):
//
//	zones/ZONE.json       what is served, held, refused; what the next step is judged by
//	alerts/ZONE.json      the zone's open problems, for check (absent: none)
//	versions/ZONE/NAME    the versions the signer handed over and the gate keeps
//	                      (hard links of the signer's files; copies across file systems)
//	locks/ZONE.lock       the zone's lock
//	bypass.json           zones whose gate an operator turned off
//
// ZONE is statedir.SafeName of the zone's name. A zone's files are written
// only under its lock. The alert is written before the state that raises
// it and removed after the state that settles it: a crash in between
// leaves a false alarm until the next run, never a missed one.

const (
	stateFolder   = "publish"
	zonesFolder   = "zones"
	alertsFolder  = "alerts"
	versionFolder = "versions"
	locksFolder   = "locks"
	bypassFile    = "bypass.json"

	zoneFormat   = "ods-keyguard/publish-zone/1"
	alertFormat  = "ods-keyguard/publish-alert/1"
	bypassFormat = "ods-keyguard/publish-bypass/1"

	// maxStateFile caps a zone's state file (its served version's keys
	// and signers, the first findings of a refused one).
	maxStateFile = 4 << 20
)

// zoneState is what the gate knows of one zone.
type zoneState struct {
	Zone string `json:"zone"`
	// Served is what the gate installed last; nil when it never did.
	Served *served `json:"served,omitempty"`
	// Held is the newest version kept back (rule 1, or a step that is
	// not safe yet); Refused the newest that fails validation, kept so
	// that a bypass can still publish it.
	Held    *version `json:"held,omitempty"`
	Refused *version `json:"refused,omitempty"`
	// Failure is what went wrong last (install, reload, time), until a
	// run succeeds.
	Failure *failure `json:"failure,omitempty"`
	// Reported is, in report mode, the last version that enforce mode
	// would have held or refused, published all the same.
	Reported *version `json:"reported,omitempty"`
	// Unbacked is the served version when it was published with keys
	// that are not backed up (at its deadline, in report mode, or through
	// a bypass): rule 1 broken on the name servers, until a ceremony
	// covers them or a version without them is served.
	Unbacked *version `json:"unbacked,omitempty"`
	// PublishedSince and LastSigned are SafeStep's Proof, kept from
	// publication to publication (by key tag).
	PublishedSince map[uint16]time.Time `json:"published_since,omitempty"`
	LastSigned     map[uint16]time.Time `json:"last_signed,omitempty"`
	// BackedUp lists keys known to be backed up, by the SHA-256 of their
	// DNSKEY public key, with the enforcer's locator: a backup never
	// ends, so a zone whose signing keys are all here needs neither the
	// ceremonies nor a token read again.
	BackedUp map[string]string `json:"backed_up,omitempty"`
	// AtParent lists the KSKs and CSKs (by locator) whose DS the DS
	// records say went to the parent (or have no record of, the DS
	// predating them), while the enforcer has it submitted or seen: the
	// DS records need not be read again for them until the enforcer
	// retracts the DS.
	AtParent map[string]bool `json:"at_parent,omitempty"`
	// Installing is a version being installed (see installing).
	Installing *installing `json:"installing,omitempty"`
	// LastRun is when the gate last decided something for the zone.
	LastRun time.Time `json:"last_run"`
}

// served is the version on the name servers, as the gate installed it.
type served struct {
	Serial uint32    `json:"serial"`
	SHA256 string    `json:"sha256"`
	Path   string    `json:"path"`
	Since  time.Time `json:"since"` // when it was installed
	// Reloaded is false when the reload command failed after the file
	// was installed: the file is new, the server's copy may be old.
	Reloaded bool    `json:"reloaded"`
	Review   summary `json:"review"`
	// Deadline is when its earliest signature expires, less the margin:
	// a held version goes out then (on_deadline = "publish").
	Deadline time.Time `json:"deadline"`
}

// version is a version of the zone the gate kept or judged.
type version struct {
	File    string    `json:"file,omitempty"` // its name in versions/ZONE ("" when not kept)
	Serial  uint32    `json:"serial"`
	SHA256  string    `json:"sha256"`
	Since   time.Time `json:"since"`   // when the signer handed it over
	Decided time.Time `json:"decided"` // when the gate last decided it
	// Keys are the keys that made its signatures; Findings the review's
	// first ones (validation) and SafeStep's (the step).
	Keys     []ledger.PublishKey `json:"keys,omitempty"`
	Findings []Finding           `json:"findings,omitempty"`
	Reason   string              `json:"reason"`
	// Rule1 and Step say why a held version is held: keys not backed
	// up, a step that is not safe yet (or both).
	Rule1 bool `json:"rule1,omitempty"`
	Step  bool `json:"step,omitempty"`
	// Invalid: it fails validation (in report mode: published all the
	// same).
	Invalid bool `json:"invalid,omitempty"`
	// Deadline of a held version: the served version's (none when no
	// version is served).
	Deadline *time.Time `json:"deadline,omitempty"`
}

// failure is a run that could not do what it had to.
type failure struct {
	Kind   string    `json:"kind"` // ledger.PublishFailed or ledger.PublishTimeout
	Serial uint32    `json:"serial,omitempty"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// Finding is one finding of the review, or of SafeStep, as the gate keeps
// and shows it.
type Finding struct {
	Owner  string `json:"owner"`
	Type   string `json:"type"`
	KeyTag int    `json:"keytag"` // -1: no key concerned
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

func (f Finding) String() string {
	key := ""
	if f.KeyTag >= 0 {
		key = fmt.Sprintf(" key tag %d", f.KeyTag)
	}
	return fmt.Sprintf("%s %s%s: %s", f.Owner, f.Type, key, f.Reason)
}

func findingOf(f zonereview.Finding) Finding {
	return Finding{Owner: f.Owner, Type: dns.TypeToString[f.Type], KeyTag: f.KeyTag, Code: string(f.Code), Reason: f.Reason}
}

// maxKeptFindings is how many findings a version keeps (the records and
// check show the first ones).
const maxKeptFindings = 10

// summary is what SafeStep needs of the served version's review.
type summary struct {
	Serial             uint32              `json:"serial"`
	DNSKEYTTL          uint32              `json:"dnskey_ttl"`
	MaxTTL             uint32              `json:"max_ttl"`
	EarliestExpiration time.Time           `json:"earliest_expiration"`
	Keys               []summaryKey        `json:"keys"`
	Signers            []zonereview.KeyUse `json:"signers"`
}

type summaryKey struct {
	Tag       uint16 `json:"tag"`
	Algorithm uint8  `json:"algorithm"`
	Flags     uint16 `json:"flags"`
	PublicKey string `json:"public_key"`
}

func summarize(r *zonereview.Report) summary {
	s := summary{Serial: r.Serial, DNSKEYTTL: r.DNSKEYTTL, MaxTTL: r.MaxTTL, EarliestExpiration: r.EarliestExpiration, Signers: r.Signers}
	for _, k := range r.Keys {
		pub := ""
		if k.DNSKEY != nil {
			pub = k.DNSKEY.PublicKey
		}
		s.Keys = append(s.Keys, summaryKey{Tag: k.Tag, Algorithm: k.Algorithm, Flags: k.Flags, PublicKey: pub})
	}
	return s
}

// report rebuilds the part of a Report that SafeStep reads.
func (s summary) report(zone string) *zonereview.Report {
	r := &zonereview.Report{Origin: dns.Fqdn(zone), Serial: s.Serial, DNSKEYTTL: s.DNSKEYTTL, MaxTTL: s.MaxTTL,
		EarliestExpiration: s.EarliestExpiration, Signers: s.Signers}
	for _, k := range s.Keys {
		rr := &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: s.DNSKEYTTL},
			Flags: k.Flags, Protocol: 3, Algorithm: k.Algorithm, PublicKey: k.PublicKey}
		r.Keys = append(r.Keys, zonereview.Key{Tag: k.Tag, Algorithm: k.Algorithm, Flags: k.Flags, SEP: k.Flags&dns.SEP != 0, Supported: true, DNSKEY: rr})
	}
	return r
}

// store is state_dir/publish, opened.
type store struct {
	root, zones, alerts, versions, locks *statedir.Dir
}

// openStore opens state_dir/publish and its folders, made when create is
// set (a reader, check, makes nothing and finds nothing when they are not
// there).
func openStore(stateDir string, group int, create bool) (*store, error) {
	d, err := statedir.Open(stateDir, create, group)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	root, err := d.Sub(stateFolder, create)
	if err != nil {
		return nil, err
	}
	s := &store{root: root}
	for _, f := range []struct {
		dir  **statedir.Dir
		name string
	}{{&s.zones, zonesFolder}, {&s.alerts, alertsFolder}, {&s.versions, versionFolder}, {&s.locks, locksFolder}} {
		if *f.dir, err = root.Sub(f.name, create); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *store) close() {
	for _, d := range []*statedir.Dir{s.zones, s.alerts, s.versions, s.locks, s.root} {
		if d != nil {
			d.Close()
		}
	}
}

// load reads zone's state; a zone the gate never saw has an empty one.
func (s *store) load(zone string) (*zoneState, error) {
	st := &zoneState{Zone: zone}
	if err := readJSON(s.zones, statedir.SafeName(zone)+".json", zoneFormat, st); err != nil {
		return nil, err
	}
	st.Zone = zone
	return st, nil
}

// save writes zone's state and its alert: the alert first when there is
// one, and removed last when there is none (see the package's layout).
func (s *store) save(st *zoneState, onDeadline string) error {
	name := statedir.SafeName(st.Zone) + ".json"
	alerts := st.alerts(onDeadline)
	if len(alerts) > 0 {
		if err := writeJSON(s.alerts, name, alertFormat, alerts); err != nil {
			return err
		}
	}
	if err := writeJSON(s.zones, name, zoneFormat, st); err != nil {
		return err
	}
	if len(alerts) == 0 {
		return s.alerts.Remove(name)
	}
	return nil
}

// alertOnly writes the zone's alert without its state: for a state that
// cannot be read (best effort: check reports it if it can be written).
func (s *store) alertOnly(zone string, a Alert) {
	writeJSON(s.alerts, statedir.SafeName(zone)+".json", alertFormat, []Alert{a})
}

// envelope is the on-disk form of the gate's state files, as the ledger's:
// a format name, and a checksum over the data that says whether it was
// damaged or edited.
type envelope struct {
	Format string          `json:"format"`
	SHA256 string          `json:"sha256"`
	Data   json.RawMessage `json:"data"`
}

// readJSON reads name into v; a missing file leaves v as it is.
func readJSON(d *statedir.Dir, name, format string, v any) error {
	b, err := d.Read(name, maxStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	aside := "move it aside; the gate then starts the zone afresh"
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Format != format {
		return fmt.Errorf("state file %s: not a %s file: %s", d.Name(name), format, aside)
	}
	sum := sha256.Sum256(env.Data)
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return fmt.Errorf("state file %s: checksum mismatch (damaged or edited by hand): %s", d.Name(name), aside)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return fmt.Errorf("state file %s: unreadable data (%v): %s", d.Name(name), err, aside)
	}
	return nil
}

// writeJSON replaces name with v, atomically.
func writeJSON(d *statedir.Dir, name, format string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	b, err := json.Marshal(envelope{Format: format, SHA256: hex.EncodeToString(sum[:]), Data: data})
	if err != nil {
		return err
	}
	return d.WriteAtomic(name, append(b, '\n'), statedir.FileMode)
}
