package hooks

import (
	"fmt"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// TokenView is what a hook learned of one token: the keys it looked up, or
// why it could not read it.
type TokenView struct {
	Name string // `mirror "site-b"`
	Err  error
	Keys hsmcheck.Holding
}

// Facts are what decisions are made from, read once per hook run.
type Facts struct {
	State         *enforcer.State
	StateErr      error // why State is nil
	Coverage      ledger.Coverage
	CeremoniesErr error                  // why Coverage is not known
	RequireBackup map[string]bool        // repository -> <RequireBackup/>
	Tokens        map[string][]TokenView // repository -> its token and mirrors
	// Book is the DS records; nil with BookErr when they cannot be read.
	Book    *ledger.DSBook
	BookErr error
	// Parent is what the parent publishes, by zone, where [parent] is
	// configured and it answered.
	Parent map[string]parent.Answer
}

// Decision says whether a submission may go to the parent, and why not.
type Decision struct {
	Forward  bool
	Reason   string // why it is withheld; empty when forwarded
	Locator  string
	Ceremony string // the confirmed ceremony that covers the key
	// Backup says how that ceremony knew the backup: verified on the
	// backup token, or attested by the operator.
	Backup string
}

// Candidates returns the enforcer keys a submission may be: same zone, same
// key tag, a KSK or CSK use (flags 257 is a SEP key), and the cka_id where
// the enforcer gave one.
func Candidates(s Submission, st *enforcer.State) []*enforcer.Key {
	var out []*enforcer.Key
	for _, u := range uses(s, st) {
		out = append(out, u.Key)
	}
	return out
}

func uses(s Submission, st *enforcer.State) []*enforcer.Use {
	var out []*enforcer.Use
	for _, z := range st.Zones {
		if !strings.EqualFold(z.Name, s.Zone) {
			continue
		}
		for _, u := range z.Keys {
			if u.KeyTag != s.KeyTag || (u.Role != enforcer.KSK && u.Role != enforcer.CSK) {
				continue
			}
			if s.CKAID != "" && !strings.EqualFold(u.Key.Locator, s.CKAID) {
				continue
			}
			out = append(out, u)
		}
	}
	return out
}

// find tells the enforcer's use of the submission's key apart: by key tag
// and cka_id, and on a key tag collision by the public key on the token.
func find(s Submission, f Facts) (*enforcer.Use, string) {
	cands := uses(s, f.State)
	switch len(cands) {
	case 0:
		if s.CKAID != "" {
			return nil, fmt.Sprintf("no KSK with key tag %d and cka_id %s for zone %s in the enforcer's database", s.KeyTag, s.CKAID, s.Zone)
		}
		return nil, fmt.Sprintf("no KSK with key tag %d for zone %s in the enforcer's database", s.KeyTag, s.Zone)
	case 1:
		return cands[0], ""
	}
	for _, u := range cands {
		for _, t := range f.Tokens[u.Key.Repository] {
			if t.Err != nil || t.Keys == nil {
				continue
			}
			if k, n := t.Keys.Find(u.Key.Locator); n > 0 && k.Fingerprint == s.Fingerprint {
				return u, ""
			}
		}
	}
	return nil, fmt.Sprintf("%d keys of zone %s share key tag %d and none can be told apart", len(cands), s.Zone, s.KeyTag)
}

// Decide withholds a submission unless its key is found, is backed up (a
// confirmed ceremony covers it and, with RequireBackup, the enforcer has it
// Done or Not Required), and is on its repository's token and every mirror
// now with the public key the DNSKEY carries.
func Decide(s Submission, f Facts) Decision {
	if s.Err != "" {
		return Decision{Reason: s.Err}
	}
	if f.State == nil {
		why := "the enforcer's database could not be read"
		if f.StateErr != nil {
			why = f.StateErr.Error()
		}
		return Decision{Reason: why}
	}
	if f.CeremoniesErr != nil {
		return Decision{Reason: f.CeremoniesErr.Error()}
	}
	u, why := find(s, f)
	if u == nil {
		return Decision{Reason: why}
	}
	key := u.Key
	d := Decision{Locator: key.Locator}
	c := f.Coverage.Covering(key.Repository, key.Locator)
	if c == nil {
		d.Reason = fmt.Sprintf("key %s is in no confirmed backup ceremony", key.Locator)
		return d
	}
	d.Ceremony = c.ID
	if c.Verified() {
		d.Backup = fmt.Sprintf("verified on backup token %q", c.BackupToken.Name)
	} else {
		d.Backup = "attested by " + c.EndOperator
	}
	if rec, ok := c.Key(key.Locator); ok && rec.Fingerprint != "" && rec.Fingerprint != s.Fingerprint {
		d.Reason = fmt.Sprintf("the DNSKEY is not the key that ceremony %s backed up as %s", c.ID, key.Locator)
		return d
	}
	tokens := f.Tokens[key.Repository]
	if len(tokens) == 0 {
		d.Reason = fmt.Sprintf("no token configured for repository %q", key.Repository)
		return d
	}
	for _, t := range tokens {
		if t.Err != nil {
			d.Reason = fmt.Sprintf("cannot check key %s: %v", key.Locator, t.Err)
			return d
		}
		k, n := t.Keys.Find(key.Locator)
		if n == 0 {
			d.Reason = fmt.Sprintf("key %s is missing from %s", key.Locator, t.Name)
			return d
		}
		if k.Fingerprint != "" && k.Fingerprint != s.Fingerprint {
			d.Reason = fmt.Sprintf("the DNSKEY is not key %s on %s", key.Locator, t.Name)
			return d
		}
	}
	if why := rules.NotBackedUp(f.Coverage, f.RequireBackup, key); why != "" {
		d.Reason = fmt.Sprintf("key %s: %s", key.Locator, why)
		return d
	}
	d.Forward = true
	return d
}

// RetractDecision says what becomes of a retraction.
type RetractDecision struct {
	Action  string // ledger.Forwarded (forward it), ledger.Held or ledger.Skipped
	Reason  string
	Locator string
}

// DecideRetract holds a retraction while the zone's successor KSK (or CSK)
// is not known to be at the parent: its submission withheld, or with no
// record of being forwarded. Removing the old DS first would leave the
// parent with no DS of any published key. A retraction with no successor
// (the zone goes unsigned, or is removed) passes. A retraction of a DS that
// never went to the parent is skipped: there is nothing to remove.
func DecideRetract(s Submission, f Facts) RetractDecision {
	if s.Err != "" {
		return RetractDecision{Action: ledger.Rejected, Reason: s.Err}
	}
	if f.Book == nil {
		why := "the DS records cannot be read"
		if f.BookErr != nil {
			why += ": " + f.BookErr.Error()
		}
		return RetractDecision{Action: ledger.Held, Reason: why + "; whether a successor's DS is withheld cannot be told"}
	}
	d := RetractDecision{Action: ledger.Forwarded}
	self := f.Book.Find(s.Zone, s.CKAID, s.KeyTag, s.Algorithm)
	if f.State != nil {
		if u, _ := find(s, f); u != nil {
			d.Locator = u.Key.Locator
			if k := f.Book.Find(s.Zone, u.Key.Locator, s.KeyTag, s.Algorithm); k != nil {
				self = k
			}
		}
	}
	if self != nil && self.NeverForwarded() && !onParent(f, s.Zone, s.KeyTag, s.Algorithm, s.PublicKey) {
		return RetractDecision{Action: ledger.Skipped, Locator: d.Locator,
			Reason: "its DS never went to the parent (its submission was withheld): nothing to retract"}
	}
	// The successors: the zone's other KSKs and CSKs whose DS the enforcer
	// wants at the parent.
	var waiting []string
	successors := 0
	if f.State == nil {
		for _, e := range f.Book.Pending {
			if e.Kind == ledger.Submit && strings.EqualFold(e.Zone, s.Zone) && e.Fingerprint != s.Fingerprint {
				waiting = append(waiting, fmt.Sprintf("key tag %d (%s)", e.KeyTag, e.Reason))
				successors++
			}
		}
		if successors > 0 {
			d.Action, d.Reason = ledger.Held, fmt.Sprintf("the submission of its successor %s is withheld", strings.Join(waiting, ", "))
		}
		return d
	}
	for _, z := range f.State.Zones {
		if !strings.EqualFold(z.Name, s.Zone) {
			continue
		}
		for _, u := range z.Keys {
			if (u.Role != enforcer.KSK && u.Role != enforcer.CSK) || strings.EqualFold(u.Key.Locator, d.Locator) ||
				(d.Locator == "" && u.KeyTag == s.KeyTag) {
				continue
			}
			switch u.DSAtParent {
			case enforcer.DSSubmit, enforcer.DSSubmitted, enforcer.DSSeen:
			default:
				continue
			}
			successors++
			k := f.Book.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
			if (k != nil && k.AtParent()) || onParent(f, z.Name, u.KeyTag, u.Key.Algorithm, nil) {
				return d // the parent has a successor's DS: the old one may go
			}
			why := "no record of it being forwarded"
			if e := f.Book.PendingFor(ledger.Submit, k); e != nil {
				why = "withheld: " + e.Reason
			}
			waiting = append(waiting, fmt.Sprintf("key tag %d (%s)", u.KeyTag, why))
		}
	}
	if successors > 0 {
		d.Action = ledger.Held
		d.Reason = fmt.Sprintf("its successor's DS is not at the parent yet: %s", strings.Join(waiting, ", "))
	}
	return d
}

// onParent says whether the parent, where it was read, publishes a DS of
// the key.
func onParent(f Facts, zone string, keytag, algorithm int, publicKey []byte) bool {
	a, ok := f.Parent[strings.ToLower(zone)]
	if !ok || a.Err != nil {
		return false
	}
	for _, ds := range a.DS {
		if m, _ := ds.Match(zone, keytag, algorithm, publicKey); m {
			return true
		}
	}
	return false
}
