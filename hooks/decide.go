package hooks

import (
	"fmt"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// TokenView is what the hook learned of one token: its name and either
// the keys it looked up or why it could not read it.
type TokenView struct {
	Name string // `mirror "site-b"`
	Err  error
	// Lookup returns the public-key fingerprint ("" when the token has none
	// to show) of the private key with CKA_ID locator, and whether it is there.
	Lookup func(locator string) (fingerprint string, ok bool)
}

// Facts are what a decision is made from, read once per hook run.
type Facts struct {
	State         *enforcer.State
	StateErr      error // why State is nil
	Coverage      ledger.Coverage
	RequireBackup map[string]bool        // repository -> <RequireBackup/>
	Tokens        map[string][]TokenView // repository -> its token and mirrors
}

// Decision says whether a submission may go to the parent, and why not.
type Decision struct {
	Forward  bool
	Reason   string // why it is withheld; empty when forwarded
	Locator  string
	Ceremony string // the confirmed ceremony that covers the key
}

// Candidates returns the enforcer keys a submission may be: same zone, same
// key tag, a KSK or CSK use (flags 257 is a SEP key), and the cka_id where
// the enforcer gave one.
func Candidates(s Submission, st *enforcer.State) []*enforcer.Key {
	var out []*enforcer.Key
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
			out = append(out, u.Key)
		}
	}
	return out
}

// Decide withholds a submission unless its key is found, is in a confirmed
// ceremony, is on its repository's token and every mirror with the public
// key the DNSKEY carries, and (with RequireBackup) is Done in the enforcer.
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
	cands := Candidates(s, f.State)
	var key *enforcer.Key
	switch len(cands) {
	case 0:
		why := fmt.Sprintf("no KSK with key tag %d for zone %s in the enforcer's database", s.KeyTag, s.Zone)
		if s.CKAID != "" {
			why = fmt.Sprintf("no KSK with key tag %d and cka_id %s for zone %s in the enforcer's database", s.KeyTag, s.CKAID, s.Zone)
		}
		return Decision{Reason: why}
	case 1:
		key = cands[0]
	default:
		// A key tag collision: the public key on the token tells them apart.
		for _, k := range cands {
			for _, t := range f.Tokens[k.Repository] {
				if t.Err != nil {
					continue
				}
				if fp, ok := t.Lookup(k.Locator); ok && fp == s.Fingerprint {
					key = k
				}
			}
		}
		if key == nil {
			return Decision{Reason: fmt.Sprintf("%d keys of zone %s share key tag %d and none can be told apart", len(cands), s.Zone, s.KeyTag)}
		}
	}
	d := Decision{Locator: key.Locator}
	c := f.Coverage.Covering(key.Repository, key.Locator)
	if c == nil {
		d.Reason = fmt.Sprintf("key %s is in no confirmed backup ceremony", key.Locator)
		return d
	}
	d.Ceremony = c.ID
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
		fp, ok := t.Lookup(key.Locator)
		if !ok {
			d.Reason = fmt.Sprintf("key %s is missing from %s", key.Locator, t.Name)
			return d
		}
		if fp != "" && fp != s.Fingerprint {
			d.Reason = fmt.Sprintf("the DNSKEY is not key %s on %s", key.Locator, t.Name)
			return d
		}
	}
	if f.RequireBackup[key.Repository] && key.Backup != enforcer.BackupDone {
		d.Reason = fmt.Sprintf("key %s is %s in the enforcer, not Done", key.Locator, key.Backup)
		return d
	}
	d.Forward = true
	return d
}
