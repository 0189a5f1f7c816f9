package hooks

import (
	"fmt"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// tokenView is what a hook learned of one token: the keys it looked up, or
// why it could not read it.
type tokenView struct {
	Name string // `mirror "site-b"`
	Err  error
	Keys hsmcheck.Holding
}

// facts are what decisions are made from, read once per hook run.
type facts struct {
	State         *enforcer.State
	StateErr      error // why State is nil
	Coverage      ledger.Coverage
	CeremoniesErr error                  // why Coverage is not known
	RequireBackup map[string]bool        // repository -> <RequireBackup/>
	Tokens        map[string][]tokenView // repository -> its token and mirrors
	// Book is the DS records; nil with BookErr when they cannot be read.
	Book    *ledger.DSBook
	BookErr error
	// Parent is what the parent publishes, by zone, where [parent] is
	// configured and it answered.
	Parent map[string]parent.Answer
}

// decision says whether a submission may go to the parent, and why not.
type decision struct {
	Forward  bool
	Reason   string // why it is withheld; empty when forwarded
	Locator  string
	Ceremony string // the confirmed ceremony that covers the key
	// Backup says how that ceremony knew the backup: verified on the
	// backup token, or attested by the operator.
	Backup string
}

// candidates returns the enforcer keys a submission may be: same zone, same
// key tag, a KSK or CSK use (flags 257 is a SEP key), and the cka_id where
// the enforcer gave one.
func candidates(s Submission, st *enforcer.State) []*enforcer.Key {
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
func find(s Submission, f facts) (*enforcer.Use, string) {
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
	return nil, fmt.Sprintf("%s of zone %s share key tag %d and none can be told apart", human.Count(len(cands), "key"), s.Zone, s.KeyTag)
}

// decide withholds a submission unless its key is found, is backed up (a
// confirmed ceremony covers it and, with RequireBackup, the enforcer has it
// Done or Not Required), and is on its repository's token and every mirror
// now with the public key the DNSKEY carries.
func decide(s Submission, f facts) decision {
	if s.Err != "" {
		return decision{Reason: s.Err}
	}
	if f.State == nil {
		why := "the enforcer's database could not be read"
		if f.StateErr != nil {
			why = f.StateErr.Error()
		}
		return decision{Reason: why}
	}
	if f.CeremoniesErr != nil {
		return decision{Reason: f.CeremoniesErr.Error()}
	}
	u, why := find(s, f)
	if u == nil {
		return decision{Reason: why}
	}
	key := u.Key
	d := decision{Locator: key.Locator}
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

// retractDecision says what becomes of a retraction.
type retractDecision struct {
	Action  string // ledger.Forwarded (forward it), ledger.Held or ledger.Skipped
	Reason  string
	Locator string
}

// decideRetract decides a retraction from the enforcer's state and the key
// on the token, never from what the request says alone: the request may come
// from anybody who can run the hook or write a record. It goes out only when
// the enforcer has retracted that key's DS (retract, retracted, or
// unsubmitted after a ds-gone), the DNSKEY is that key's, and the zone's
// successor KSK (or CSK) is known to be at the parent: removing the old DS
// first would leave the parent with no DS of any published key. A
// retraction with no successor (the zone goes unsigned) passes. One of a DS
// that never went to the parent is skipped: there is nothing to remove. A
// retraction of a DS the enforcer still wants at the parent is rejected.
func decideRetract(s Submission, f facts) retractDecision {
	if s.Err != "" {
		return retractDecision{Action: ledger.Rejected, Reason: s.Err}
	}
	if f.Book == nil {
		why := "the DS records cannot be read"
		if f.BookErr != nil {
			why += ": " + f.BookErr.Error()
		}
		return retractDecision{Action: ledger.Held, Reason: why + "; whether a successor's DS is withheld cannot be told"}
	}
	if f.State == nil {
		why := "the enforcer's database could not be read"
		if f.StateErr != nil {
			why = f.StateErr.Error()
		}
		return retractDecision{Action: ledger.Held, Reason: why + "; whether the enforcer retracted this DS cannot be told"}
	}
	// A DS that never went to the parent needs no retraction: nothing is
	// sent, whoever asks.
	never := func(self *ledger.DSKey) bool {
		return self != nil && self.NeverForwarded() && !onParent(f, s.Zone, s.KeyTag, s.Algorithm, s.PublicKey)
	}
	skip := func(locator string) retractDecision {
		return retractDecision{Action: ledger.Skipped, Locator: locator,
			Reason: "its DS never went to the parent (its submission was withheld): nothing to retract"}
	}
	z := f.State.Zone(s.Zone)
	u, why := find(s, f)
	if z == nil || u == nil {
		if never(f.Book.Find(s.Zone, s.CKAID, s.KeyTag, s.Algorithm)) {
			return skip("")
		}
		if z == nil {
			why = fmt.Sprintf("the enforcer has no zone %s: ods-keyguard does not retract a deleted zone's DS on a request's word (ods-keyguard hook retract-gone --zone %s does, on purpose)", s.Zone, s.Zone)
		} else {
			why += ": whether the enforcer retracted this DS cannot be told; if the parent still serves it, remove it at the registrar by hand, then ods-keyguard hook drop"
		}
		return retractDecision{Action: ledger.Held, Reason: why}
	}
	d := retractDecision{Action: ledger.Forwarded, Locator: u.Key.Locator}
	switch u.DSAtParent {
	case enforcer.DSSubmit, enforcer.DSSubmitted, enforcer.DSSeen:
		return retractDecision{Action: ledger.Rejected, Locator: d.Locator,
			Reason: fmt.Sprintf("the enforcer wants this DS at the parent (DS %s): a retraction it did not ask for is never forwarded", u.DSAtParent)}
	}
	if why := sameKey(s, u, f); why != "" {
		return retractDecision{Action: ledger.Rejected, Locator: d.Locator, Reason: why}
	}
	if never(f.Book.Find(s.Zone, u.Key.Locator, s.KeyTag, s.Algorithm)) {
		return skip(d.Locator)
	}
	// The successors: the zone's other KSKs and CSKs whose DS the enforcer
	// wants at the parent.
	var waiting []string
	successors := 0
	for _, v := range z.Keys {
		if (v.Role != enforcer.KSK && v.Role != enforcer.CSK) || strings.EqualFold(v.Key.Locator, d.Locator) {
			continue
		}
		switch v.DSAtParent {
		case enforcer.DSSubmit, enforcer.DSSubmitted, enforcer.DSSeen:
		default:
			continue
		}
		successors++
		k := f.Book.Find(z.Name, v.Key.Locator, v.KeyTag, v.Key.Algorithm)
		pub := publicKey(f, v.Key)
		if pub == nil && k != nil {
			pub = publicKeyOf(k)
		}
		if (k != nil && k.AtParent()) || onParent(f, z.Name, v.KeyTag, v.Key.Algorithm, pub) {
			return d // the parent has a successor's DS: the old one may go
		}
		why := "no record of it being forwarded"
		if e := f.Book.PendingFor(ledger.Submit, k); e != nil {
			why = "withheld: " + e.Reason
		}
		waiting = append(waiting, fmt.Sprintf("key tag %d (%s)", v.KeyTag, why))
	}
	if successors > 0 {
		d.Action = ledger.Held
		d.Reason = fmt.Sprintf("its successor's DS is not at the parent yet: %s", strings.Join(waiting, ", "))
	}
	return d
}

// sameKey says why the DNSKEY of a retraction is not the enforcer key u,
// or "" when it is: the public key on a token, else the one the records
// forwarded for it, must be the one the request names. A retraction's line
// is what the registrar removes: it must be the retracted key's.
func sameKey(s Submission, u *enforcer.Use, f facts) string {
	if pub := publicKey(f, u.Key); pub != nil {
		if hsmcheck.FingerprintDNSKEY(pub) != s.Fingerprint {
			return fmt.Sprintf("the DNSKEY is not key %s, which the tokens hold with another public key", u.Key.Locator)
		}
		return ""
	}
	if fp := forwardedKey(f.Book.Find(s.Zone, u.Key.Locator, u.KeyTag, u.Key.Algorithm)); fp != "" {
		if fp != s.Fingerprint {
			return fmt.Sprintf("the DNSKEY is not key %s, whose DS went to the parent with another public key", u.Key.Locator)
		}
		return ""
	}
	// Neither a token nor the records know the key's public key (purged
	// from the HSM, adopted before the records): the key tag and cka_id
	// matched the enforcer's, and the successor rule still applies.
	return ""
}

// forwardedKey is the fingerprint of the DNSKEY that the records forwarded
// as k's submission, or "": what went to the parent, not what a request
// kept back said.
func forwardedKey(k *ledger.DSKey) string {
	if k == nil {
		return ""
	}
	fp := ""
	for _, e := range k.Events {
		if e.Kind == ledger.Submit && e.Action == ledger.Forwarded && e.Fingerprint != "" {
			fp = e.Fingerprint
		}
	}
	return fp
}

// successorKeys lists the KSKs and CSKs of the zones named whose DS the
// enforcer wants at the parent, and the keys of the retractions kept back
// for those zones: what a retraction is decided on, read from the tokens.
func successorKeys(st *enforcer.State, b *ledger.DSBook, zones map[string]bool) []*enforcer.Key {
	var out []*enforcer.Key
	for _, z := range st.Zones {
		if !zones[strings.ToLower(z.Name)] {
			continue
		}
		for _, u := range z.Keys {
			if u.Role == enforcer.ZSK {
				continue
			}
			switch u.DSAtParent {
			case enforcer.DSSubmit, enforcer.DSSubmitted, enforcer.DSSeen:
				out = append(out, u.Key)
				continue
			}
			if b == nil {
				continue
			}
			for _, e := range b.Pending {
				if e.Kind == ledger.Retract && strings.EqualFold(e.Zone, z.Name) && strings.EqualFold(e.Locator, u.Key.Locator) {
					out = append(out, u.Key)
					break
				}
			}
		}
	}
	return out
}

// onParent says whether the parent, where it was read, publishes a DS of
// the key.
func onParent(f facts, zone string, keytag, algorithm int, publicKey []byte) bool {
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
