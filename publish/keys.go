package publish

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// facts are what the gate knows of a zone besides its file, read once per
// run and only as far as a decision needs them: the enforcer's view of the
// zone always (one zone's rows), the ceremonies only for a signing key not
// known to be backed up, the DS records only when the enforcer has a DS at
// the parent, the tokens only when two keys of the zone share a key tag.
type facts struct {
	g    *Gate
	zone string
	st   *zoneState

	enf    *enforcer.State // the zone alone
	enfErr error

	cov     ledger.Coverage
	covErr  error
	covRead bool

	book     *ledger.DSBook
	bookErr  error
	bookRead bool

	// public: locator -> fingerprint of its public key on a token ("" when
	// no token could say).
	public map[string]string
}

func (g *Gate) facts(ctx context.Context, zone string, st *zoneState) *facts {
	f := &facts{g: g, zone: zone, st: st, public: map[string]string{}}
	f.enf, f.enfErr = g.Source.ZoneState(ctx, zone)
	if f.enfErr == nil && f.zoneOf() == nil {
		f.enfErr = fmt.Errorf("the enforcer has no zone %s (%s)", zone, g.Source)
	}
	return f
}

// use is the zone's use of the key with locator, or nil.
func (f *facts) use(locator string) *enforcer.Use {
	for _, u := range f.zoneOf().Keys {
		if u.Key.Locator == locator {
			return u
		}
	}
	return nil
}

// zoneOf is the enforcer's zone, or nil.
func (f *facts) zoneOf() *enforcer.Zone {
	if f.enf == nil {
		return nil
	}
	return f.enf.Zone(f.zone)
}

// margin is how long every signature must stay valid: [publish] margin,
// else half the policy's <Signatures><Refresh> (the signer renews a
// signature within Refresh of its expiry, so a file it just wrote has
// none closer than that), else a day.
func (f *facts) margin() time.Duration {
	if f.g.Config.Margin > 0 {
		return f.g.Config.Margin
	}
	if z := f.zoneOf(); z != nil && z.Policy != nil && z.Policy.SignaturesRefresh > 0 {
		return z.Policy.SignaturesRefresh / 2
	}
	return 24 * time.Hour
}

func (f *facts) coverage(ctx context.Context) (ledger.Coverage, error) {
	if !f.covRead {
		f.covRead = true
		store, err := f.g.Ledger.Ceremonies(ctx)
		if err != nil {
			f.covErr = err
		} else {
			f.cov = store.Coverage()
		}
	}
	return f.cov, f.covErr
}

func (f *facts) dsBook(ctx context.Context) (*ledger.DSBook, error) {
	if !f.bookRead {
		f.bookRead = true
		f.book, f.bookErr = f.g.Ledger.DS(ctx)
	}
	return f.book, f.bookErr
}

// fingerprint is the SHA-256 of a DNSKEY's public key, as hsmcheck and the
// ledger write it; "" when it does not decode.
func fingerprint(k *dns.DNSKEY) string {
	if k == nil {
		return ""
	}
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil {
		return ""
	}
	return hsmcheck.FingerprintDNSKEY(pub)
}

// signingKeys decides rule 1 for every key that made a signature in the
// version, exactly as check decides it (rules.NotBackedUp: a confirmed
// ceremony covers it and, with <RequireBackup/>, the enforcer has it Done),
// for the enforcer's key of the zone that it is: matched by key tag and
// algorithm, and by its public key on the tokens when that is not enough.
// A key that is no key of the enforcer is not backed up.
func (f *facts) signingKeys(ctx context.Context, rep *zonereview.Report) []ledger.PublishKey {
	var out []ledger.PublishKey
	for _, u := range rep.Signers {
		if u.Signatures == 0 {
			continue
		}
		pk := ledger.PublishKey{KeyTag: int(u.Tag), Algorithm: int(u.Algorithm)}
		var dnskeys []*dns.DNSKEY
		for _, k := range rep.Keys {
			if k.Tag == u.Tag && k.Algorithm == u.Algorithm && k.DNSKEY != nil {
				dnskeys = append(dnskeys, k.DNSKEY)
			}
		}
		fp := ""
		if len(dnskeys) == 1 {
			fp = fingerprint(dnskeys[0])
		}
		if loc, ok := f.st.BackedUp[fp]; ok && fp != "" {
			pk.Locator, pk.BackedUp = loc, true
			out = append(out, pk)
			continue
		}
		pk.Locator, pk.Reason = f.backup(ctx, u, dnskeys)
		if pk.Reason == "" {
			pk.BackedUp = true
			if fp != "" {
				if f.st.BackedUp == nil {
					f.st.BackedUp = map[string]string{}
				}
				f.st.BackedUp[fp] = pk.Locator
			}
		}
		out = append(out, pk)
	}
	return out
}

// backup finds the enforcer's key that signed as u and says why it is not
// backed up ("" when it is).
func (f *facts) backup(ctx context.Context, u zonereview.KeyUse, dnskeys []*dns.DNSKEY) (locator, reason string) {
	if len(dnskeys) == 0 {
		return "", "no DNSKEY of the zone has its key tag and algorithm: no key of the enforcer"
	}
	if f.enfErr != nil {
		return "", "cannot tell whether it is backed up: " + f.enfErr.Error()
	}
	var cands []*enforcer.Use
	for _, use := range f.zoneOf().Keys {
		if use.KeyTag == int(u.Tag) && use.Key.Algorithm == int(u.Algorithm) {
			cands = append(cands, use)
		}
	}
	if len(cands) == 0 {
		return "", fmt.Sprintf("no key of the enforcer for zone %s has key tag %d and algorithm %d", f.zone, u.Tag, u.Algorithm)
	}
	keys := []*enforcer.Key{cands[0].Key}
	if len(cands) > 1 || len(dnskeys) > 1 {
		// Key tags collide: each DNSKEY of this tag is told apart by its
		// public key on the tokens, and every one that signs must be
		// backed up.
		var err error
		if keys, err = f.byPublicKey(ctx, cands, dnskeys); err != nil {
			return "", err.Error()
		}
	}
	cov, err := f.coverage(ctx)
	if err != nil {
		return keys[0].Locator, "cannot tell whether it is backed up: " + err.Error()
	}
	for _, k := range keys {
		if why := rules.NotBackedUp(cov, f.g.RequireBackup, k); why != "" {
			return k.Locator, fmt.Sprintf("key %s: %s", k.Locator, why)
		}
	}
	return keys[0].Locator, ""
}

// byPublicKey matches the DNSKEYs to the candidates by the public keys the
// tokens hold; a DNSKEY that matches none is no key of the enforcer.
func (f *facts) byPublicKey(ctx context.Context, cands []*enforcer.Use, dnskeys []*dns.DNSKEY) ([]*enforcer.Key, error) {
	var want []string
	repos := map[string]bool{}
	for _, c := range cands {
		if _, ok := f.public[c.Key.Locator]; !ok {
			want = append(want, c.Key.Locator)
			repos[c.Key.Repository] = true
		}
	}
	if len(want) > 0 {
		var tokens []hsmcheck.Token
		for _, t := range f.g.Tokens {
			if repos[t.Repository] && t.Kind != hsmcheck.KindBackupToken {
				tokens = append(tokens, t)
			}
		}
		for _, l := range want {
			f.public[l] = ""
		}
		for _, res := range f.g.Source.Tokens(ctx, tokens, hsmcheck.Request{IDs: want, PublicIDs: want}) {
			if res.Contents == nil {
				continue
			}
			for _, l := range want {
				if k, n := res.Contents.Find(l); n > 0 && k.Fingerprint != "" {
					f.public[l] = k.Fingerprint
				}
			}
		}
	}
	var out []*enforcer.Key
	for _, d := range dnskeys {
		fp := fingerprint(d)
		var found *enforcer.Key
		for _, c := range cands {
			if fp != "" && f.public[c.Key.Locator] == fp {
				found = c.Key
			}
		}
		if found == nil {
			return nil, fmt.Errorf("%s of zone %s share key tag %d and no token told which one DNSKEY %s... is", human.Count(len(cands), "key"), f.zone, cands[0].KeyTag, shortKey(d))
		}
		out = append(out, found)
	}
	return out, nil
}

func shortKey(k *dns.DNSKEY) string {
	if len(k.PublicKey) > 12 {
		return k.PublicKey[:12]
	}
	return k.PublicKey
}

// parentDS is the DS set the zone's DNSKEY RRset must be anchored by: one
// DS for each DNSKEY of the file that is a KSK or CSK of the enforcer whose
// DS the parent has, as far as ods-keyguard knows (the enforcer has it
// submitted or seen, and the DS records do not say its submission was
// withheld; or its retraction is held by ods-keyguard). nil when the
// enforcer has no DS of the zone at the parent at all: the delegation is
// insecure and nothing is anchored. settled says that every such key has
// been seen at the parent long enough for caches (SafeStep's DSSettled).
func (f *facts) parentDS(ctx context.Context, rep *zonereview.Report) (ds []*dns.DS, settled bool, err error) {
	if f.enfErr != nil {
		return nil, false, f.enfErr
	}
	var at []*enforcer.Use
	for _, u := range f.zoneOf().Keys {
		if u.Role != enforcer.KSK && u.Role != enforcer.CSK {
			continue
		}
		switch u.DSAtParent {
		case enforcer.DSSubmitted, enforcer.DSSeen:
			if f.st.AtParent[u.Key.Locator] {
				at = append(at, u) // known from an earlier run
				continue
			}
		case enforcer.DSRetract, enforcer.DSRetracted:
		default:
			continue
		}
		book, err := f.dsBook(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("the DS records: %w", err)
		}
		k := book.Find(f.zone, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
		switch {
		case u.DSAtParent == enforcer.DSSubmitted || u.DSAtParent == enforcer.DSSeen:
			if k != nil && !k.AtParent() {
				continue // withheld by the DS guard: not at the parent
			}
			if f.st.AtParent == nil {
				f.st.AtParent = map[string]bool{}
			}
			f.st.AtParent[u.Key.Locator] = true
		case k == nil || !k.AtParent():
			continue // retracted, and the retraction went out
		}
		at = append(at, u)
	}
	for loc := range f.st.AtParent {
		if u := f.use(loc); u == nil || (u.DSAtParent != enforcer.DSSubmitted && u.DSAtParent != enforcer.DSSeen) {
			delete(f.st.AtParent, loc)
		}
	}
	if len(at) == 0 {
		return nil, true, nil
	}
	ds = []*dns.DS{}
	settled = true
	for _, u := range at {
		for _, k := range rep.Keys {
			if int(k.Tag) == u.KeyTag && int(k.Algorithm) == u.Key.Algorithm && k.DNSKEY != nil {
				if d := k.DNSKEY.ToDS(dns.SHA256); d != nil {
					ds = append(ds, d)
				}
			}
		}
	}
	// Settled: every key that signs the DNSKEY RRset has its DS seen at
	// the parent, and the enforcer counts it omnipresent (its TTL waited).
	for _, s := range rep.Signers {
		if !s.SignedDNSKEY {
			continue
		}
		ok := false
		for _, u := range at {
			if u.KeyTag == int(s.Tag) && u.Key.Algorithm == int(s.Algorithm) && u.DSAtParent == enforcer.DSSeen && u.States[enforcer.RecordDS] == enforcer.Omnipresent {
				ok = true
			}
		}
		settled = settled && ok
	}
	return ds, settled, nil
}

// describeKeys is the reason of a version some of whose keys are not
// backed up.
func describeKeys(keys []ledger.PublishKey) string {
	var parts []string
	for _, k := range keys {
		if k.BackedUp {
			continue
		}
		parts = append(parts, fmt.Sprintf("key tag %d: %s", k.KeyTag, k.Reason))
	}
	return "signed by keys without a verified backup (rule 1): " + strings.Join(parts, "; ")
}

func anyUnbacked(keys []ledger.PublishKey) bool {
	for _, k := range keys {
		if !k.BackedUp {
			return true
		}
	}
	return false
}
