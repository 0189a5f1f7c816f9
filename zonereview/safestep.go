package zonereview

import (
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// Proof is what the caller knows from its own records about versions
// published before the served one, which no zone file says. Every field may
// be left empty: SafeStep then assumes the worst.
type Proof struct {
	// ServedSince is when the served version was published. Zero: unknown.
	ServedSince time.Time
	// LastSigned maps a key tag to the time the last published version in
	// which that key signed an RRset other than the DNSKEY RRset was
	// replaced. Without an entry, a key that signs nothing in the served
	// version is taken to have signed in the version before it.
	LastSigned map[uint16]time.Time
	// PublishedSince maps a key tag to the time the key first appeared in
	// a published DNSKEY RRset (and stayed since). Without an entry, a key
	// in the served DNSKEY RRset is taken to have appeared with it.
	PublishedSince map[uint16]time.Time
	// DSSettled says the parent has served the DS of every key that signs
	// next's DNSKEY RRset for at least the DS RRset's TTL, so resolvers'
	// cached DS sets match them (the enforcer's ds-seen, plus that wait).
	DSSettled bool
}

// SafeStep says whether publishing next in place of served, at now, can
// make the zone bogus for a validating resolver that cached data of served
// (or of versions before it). Each finding is of severity Error and names
// the key. Both reports come from Review; SafeStep does not repeat
// Review's rules for next, whose own findings the caller checks.
//
// The served version stays on the name servers until now, so whatever it
// contains may have been fetched a moment ago and be cached for its TTL
// after now: time since the served version was published proves nothing
// about served's own contents. It only bounds what older versions left in
// caches. The rules, after RFC 6781 section 4.1 and RFC 7583 section 3:
//
//  1. Retiring a key too early. A key of served's DNSKEY RRset that next
//     drops, and that signed any RRset other than the DNSKEY RRset in
//     served, is refused outright: a resolver may hold such an RRset and
//     its RRSIG until now plus its TTL, then fetch next's DNSKEY RRset to
//     validate it and find no key (the ZSK's "Iret" interval: the key is
//     removed only after a version that no longer uses it has been served
//     for the largest TTL of what it signed).
//  2. Dropping a key that signed in older versions. A dropped key that
//     signed nothing in served (other than the DNSKEY RRset) may still
//     have signatures in caches from the last version it signed in: they
//     stopped being served when that version was replaced (LastSigned,
//     or at the latest ServedSince), and may be cached for up to the
//     largest TTL in the zone (served's MaxTTL, at least its DNSKEY TTL).
//     The drop is refused until that much time has passed, or when
//     neither time is known.
//  3. A key that signed only the DNSKEY RRset (a KSK) may be dropped: a
//     resolver that cached served's DNSKEY RRset holds the key with its
//     signature, a consistent pair; whether next's DNSKEY RRset is
//     anchored is rule 5.
//  4. Signing with a key caches do not know yet. Every key with a
//     verified signature in next over an RRset other than the DNSKEY
//     RRset must be in served's DNSKEY RRset: a resolver may hold that
//     RRset until now plus its TTL. A key that signed nothing but the
//     DNSKEY RRset in served must moreover have been published for at
//     least the DNSKEY TTL (PublishedSince, or served's ServedSince), so
//     that DNSKEY RRsets from before it are out of caches (the ZSK's
//     pre-publication interval "Ipub"). A key already signing in served
//     has passed this test before.
//  5. The DNSKEY RRset's anchor. Next's DNSKEY RRset must carry a verified
//     signature by a key that signed served's DNSKEY RRset: resolvers
//     hold the parent's DS set for its TTL, which this package cannot
//     see, and the keys that anchored served's DNSKEY RRset are the ones
//     that set surely matches. DSSettled lifts the rule (a KSK rollover
//     once the parent's new DS set has been served for its TTL).
//
// Keys are the same when algorithm and public key are; key tags in Proof
// are matched by tag alone.
func SafeStep(served, next *Report, now time.Time, proof Proof) []Finding {
	var out []Finding
	origin := served.Origin
	if origin == "" {
		origin = next.Origin
	}
	find := func(sev Severity, code Code, k *Key, reason string) {
		out = append(out, Finding{Severity: sev, Code: code, Owner: origin, Type: dns.TypeDNSKEY, KeyTag: int(k.Tag), Algorithm: k.Algorithm, Reason: reason})
	}
	layout := "2006-01-02 15:04:05 UTC"
	inNext := func(k *Key) bool { return hasKey(next.Keys, k) }
	// Rules 1 to 3: keys that next drops.
	for i := range served.Keys {
		k := &served.Keys[i]
		if inNext(k) {
			continue
		}
		u := use(served, k)
		switch {
		case u != nil && u.SignedOther:
			find(Error, CodeKeyRemoved, k, fmt.Sprintf("DNSKEY %d (%s) of %s signs RRsets of the served version, which resolvers may cache until %s (TTL %d s): it must stay in the DNSKEY RRset until a version that no longer uses it has been served that long",
				k.Tag, algString(k.Algorithm), origin, now.Add(ttl(u.MaxTTL)).UTC().Format(layout), u.MaxTTL))
		case u != nil && u.SignedDNSKEY:
			// Rule 3.
		default:
			last, ok := proof.LastSigned[k.Tag]
			if !ok {
				last = proof.ServedSince
			}
			hold := ttl(max(served.MaxTTL, served.DNSKEYTTL))
			if last.IsZero() {
				find(Error, CodeKeyRemoved, k, fmt.Sprintf("DNSKEY %d (%s) of %s is dropped, and nothing says when it last signed: its signatures may be cached for %s after that", k.Tag, algString(k.Algorithm), origin, hold))
			} else if now.Before(last.Add(hold)) {
				find(Error, CodeKeyRemoved, k, fmt.Sprintf("DNSKEY %d (%s) of %s is dropped, but signatures it made until %s may be cached until %s",
					k.Tag, algString(k.Algorithm), origin, last.UTC().Format(layout), last.Add(hold).UTC().Format(layout)))
			}
		}
	}
	// Rule 4: keys that sign in next.
	for i := range next.Keys {
		k := &next.Keys[i]
		u := use(next, k)
		if u == nil || !u.SignedOther {
			continue
		}
		if !hasKey(served.Keys, k) {
			find(Error, CodeKeyNotInServed, k, fmt.Sprintf("DNSKEY %d (%s) of %s signs RRsets of the next version but is not in the served DNSKEY RRset, which resolvers may cache until %s: publish it first",
				k.Tag, algString(k.Algorithm), origin, now.Add(ttl(served.DNSKEYTTL)).UTC().Format(layout)))
			continue
		}
		if su := use(served, servedKey(served, k)); su != nil && su.SignedOther {
			continue
		}
		since, ok := proof.PublishedSince[k.Tag]
		if !ok {
			since = proof.ServedSince
		}
		need := ttl(served.DNSKEYTTL)
		if since.IsZero() {
			find(Error, CodeKeyNotInServed, k, fmt.Sprintf("DNSKEY %d (%s) of %s starts signing, and nothing says since when it is published: DNSKEY RRsets without it may be cached for %s", k.Tag, algString(k.Algorithm), origin, need))
		} else if now.Before(since.Add(need)) {
			find(Error, CodeKeyNotInServed, k, fmt.Sprintf("DNSKEY %d (%s) of %s starts signing, but it is published only since %s: DNSKEY RRsets without it may be cached until %s",
				k.Tag, algString(k.Algorithm), origin, since.UTC().Format(layout), since.Add(need).UTC().Format(layout)))
		}
	}
	// Rule 5: next's DNSKEY RRset is signed by a key that anchored served's.
	if !proof.DSSettled {
		anchored := false
		var signers []*Key
		for i := range next.Keys {
			k := &next.Keys[i]
			u := use(next, k)
			if u == nil || !u.SignedDNSKEY {
				continue
			}
			signers = append(signers, k)
			if su := use(served, servedKey(served, k)); su != nil && su.SignedDNSKEY {
				anchored = true
			}
		}
		if !anchored {
			k := &Key{}
			if len(signers) > 0 {
				k = signers[0]
			}
			f := Finding{Severity: Error, Code: CodeDNSKEYChain, Owner: origin, Type: dns.TypeDNSKEY, KeyTag: -1,
				Reason: fmt.Sprintf("the next DNSKEY RRset of %s is signed by no key that signed the served one: resolvers' cached DS sets may match none of its signers", origin)}
			if len(signers) > 0 {
				f.KeyTag, f.Algorithm = int(k.Tag), k.Algorithm
				f.Reason = fmt.Sprintf("the next DNSKEY RRset of %s is signed by key %d (%s), which did not sign the served one: resolvers' cached DS sets may not match it", origin, k.Tag, algString(k.Algorithm))
			}
			out = append(out, f)
		}
	}
	return out
}

func ttl(s uint32) time.Duration { return time.Duration(s) * time.Second }

func sameKey(a, b *Key) bool {
	return a.DNSKEY != nil && b.DNSKEY != nil && a.Algorithm == b.Algorithm && a.DNSKEY.PublicKey == b.DNSKEY.PublicKey
}

func hasKey(keys []Key, k *Key) bool { return servedKeyIn(keys, k) != nil }

func servedKeyIn(keys []Key, k *Key) *Key {
	for i := range keys {
		if sameKey(&keys[i], k) {
			return &keys[i]
		}
	}
	return nil
}

func servedKey(served *Report, k *Key) *Key { return servedKeyIn(served.Keys, k) }

// use is what the key signed in r (by its tag and algorithm in r).
func use(r *Report, k *Key) *KeyUse {
	if k == nil {
		return nil
	}
	for i := range r.Signers {
		u := &r.Signers[i]
		if u.Tag == k.Tag && u.Algorithm == k.Algorithm && u.InDNSKEY {
			return u
		}
	}
	return nil
}
