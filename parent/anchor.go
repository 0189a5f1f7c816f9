package parent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Anchor is [parent] trust_anchor: the parent zone's own key (its DNSKEY,
// or the DS of it), from which the parent's DS answers are validated with
// DNSSEC. With it, a DS RRset counts only when it is signed by the parent
// zone's keys, themselves signed by the anchor, and "no DS" only with an
// authenticated denial (NSEC or NSEC3) so signed: a spoofed or stripped
// answer cannot tell the enforcer ds-seen or ds-gone.
type Anchor struct {
	// Zone is the parent zone the anchor is a key of (lower case, with the
	// final dot).
	Zone string
	keys []*dns.DNSKEY
	ds   []*dns.DS

	mu    sync.Mutex
	trust map[string][]*dns.DNSKEY // server -> its validated DNSKEY RRset
}

// bindAnchor is one statement of BIND's trust-anchors (or
// managed-keys/trusted-keys) syntax, as delv -a and named read it.
var bindAnchor = regexp.MustCompile(`"?([^"\s{};]+)"?\s+(?:static|initial)-(key|ds)\s+(\d+)\s+(\d+)\s+(\d+)\s+"([^"]+)"\s*;`)

// LoadAnchor reads a trust anchor file: DNSKEY or DS records of one zone,
// in zone-file form (as `dig ZONE DNSKEY` or dnssec-dsfromkey print them),
// or BIND's trust-anchors statement (as delv -a reads it).
func LoadAnchor(path string) (*Anchor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust anchor %s: %w", path, err)
	}
	a, err := ParseAnchor(string(b))
	if err != nil {
		return nil, fmt.Errorf("trust anchor %s: %w", path, err)
	}
	return a, nil
}

// ParseAnchor reads a trust anchor's text; see LoadAnchor.
func ParseAnchor(text string) (*Anchor, error) {
	var rrs []dns.RR
	if strings.Contains(text, "static-") || strings.Contains(text, "initial-") {
		for _, m := range bindAnchor.FindAllStringSubmatch(text, -1) {
			var line string
			if m[2] == "key" {
				line = fmt.Sprintf("%s IN DNSKEY %s %s %s %s", dns.Fqdn(m[1]), m[3], m[4], m[5], m[6])
			} else {
				line = fmt.Sprintf("%s IN DS %s %s %s %s", dns.Fqdn(m[1]), m[3], m[4], m[5], m[6])
			}
			rr, err := dns.NewRR(line)
			if err != nil {
				return nil, fmt.Errorf("%s %s-%s: not a valid key", m[1], "static", m[2])
			}
			rrs = append(rrs, rr)
		}
	} else {
		zp := dns.NewZoneParser(strings.NewReader(text), "", "")
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			rrs = append(rrs, rr)
		}
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("not DNSKEY or DS records: %v", err)
		}
	}
	a := &Anchor{trust: map[string][]*dns.DNSKEY{}}
	for _, rr := range rrs {
		name := strings.ToLower(dns.Fqdn(rr.Header().Name))
		if a.Zone != "" && a.Zone != name {
			return nil, fmt.Errorf("keys of two zones (%s, %s): give the parent zone's only", a.Zone, name)
		}
		a.Zone = name
		switch r := rr.(type) {
		case *dns.DNSKEY:
			if r.Flags&dns.ZONE == 0 || r.Protocol != 3 {
				return nil, fmt.Errorf("DNSKEY %d of %s: not a zone key", r.KeyTag(), name)
			}
			a.keys = append(a.keys, r)
		case *dns.DS:
			a.ds = append(a.ds, r)
		default:
			return nil, fmt.Errorf("a %s record: want DNSKEY or DS", dns.TypeToString[rr.Header().Rrtype])
		}
	}
	if a.Zone == "" {
		return nil, errors.New("no DNSKEY or DS record")
	}
	return a, nil
}

// String names the anchor: "example. DNSKEY 12345" or "example. DS 12345".
func (a *Anchor) String() string {
	var tags []string
	for _, k := range a.keys {
		tags = append(tags, "DNSKEY "+strconv.Itoa(int(k.KeyTag())))
	}
	for _, d := range a.ds {
		tags = append(tags, "DS "+strconv.Itoa(int(d.KeyTag)))
	}
	return a.Zone + " " + strings.Join(tags, ", ")
}

// anchors says whether k is one of the anchor's keys.
func (a *Anchor) anchors(k *dns.DNSKEY) bool {
	for _, t := range a.keys {
		if t.Flags == k.Flags && t.Algorithm == k.Algorithm && t.Protocol == k.Protocol && t.PublicKey == k.PublicKey {
			return true
		}
	}
	for _, d := range a.ds {
		if d.KeyTag != k.KeyTag() || d.Algorithm != k.Algorithm {
			continue
		}
		if own := k.ToDS(d.DigestType); own != nil && strings.EqualFold(own.Digest, d.Digest) {
			return true
		}
	}
	return false
}

// asker asks the server the validation is of one question.
type asker func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)

// zoneKeys returns the parent zone's DNSKEY RRset as server serves it,
// once validated: signed, now, by a key the anchor names.
func (a *Anchor) zoneKeys(ctx context.Context, server string, ask asker, now time.Time) ([]*dns.DNSKEY, error) {
	a.mu.Lock()
	keys, ok := a.trust[server]
	a.mu.Unlock()
	if ok {
		return keys, nil
	}
	r, err := ask(ctx, a.Zone, dns.TypeDNSKEY)
	if err != nil {
		return nil, fmt.Errorf("DNSKEY of %s: %w", a.Zone, err)
	}
	var set []dns.RR
	var sigs []*dns.RRSIG
	for _, rr := range r.Answer {
		if !strings.EqualFold(rr.Header().Name, a.Zone) {
			continue
		}
		switch x := rr.(type) {
		case *dns.DNSKEY:
			set = append(set, x)
			keys = append(keys, x)
		case *dns.RRSIG:
			if x.TypeCovered == dns.TypeDNSKEY {
				sigs = append(sigs, x)
			}
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no DNSKEY RRset of %s served", a.Zone)
	}
	for _, k := range keys {
		if !a.anchors(k) {
			continue
		}
		for _, s := range sigs {
			if s.KeyTag == k.KeyTag() && s.ValidityPeriod(now) && s.Verify(k, set) == nil {
				a.mu.Lock()
				a.trust[server] = keys
				a.mu.Unlock()
				return keys, nil
			}
		}
	}
	return nil, fmt.Errorf("the DNSKEY RRset of %s is not signed, valid now, by the trust anchor (%s)", a.Zone, a)
}

// verified says whether rrset (one RRset of owner and type t) has a
// signature in sigs by one of keys, valid now, made by the anchor's zone
// and not synthesised from a wildcard.
func (a *Anchor) verified(rrset []dns.RR, sigs []*dns.RRSIG, keys []*dns.DNSKEY, now time.Time) bool {
	if len(rrset) == 0 {
		return false
	}
	h := rrset[0].Header()
	for _, s := range sigs {
		if s.TypeCovered != h.Rrtype || !strings.EqualFold(s.Hdr.Name, h.Name) || !strings.EqualFold(s.SignerName, a.Zone) ||
			int(s.Labels) != dns.CountLabel(h.Name) || !s.ValidityPeriod(now) {
			continue
		}
		for _, k := range keys {
			if k.KeyTag() == s.KeyTag && s.Verify(k, rrset) == nil {
				return true
			}
		}
	}
	return false
}

// Validate checks r, the answer of server to the question "child DS?",
// from the anchor: the DS RRset signed by the parent zone's validated keys,
// or, with no DS, a signed NSEC or NSEC3 proof that child has none. ask
// puts questions to the same server (the parent's DNSKEY RRset).
func (a *Anchor) Validate(ctx context.Context, server string, ask asker, child string, r *dns.Msg, now time.Time) error {
	child = strings.ToLower(dns.Fqdn(child))
	if child == a.Zone {
		return fmt.Errorf("the trust anchor is a key of %s itself, not of its parent", child)
	}
	if !dns.IsSubDomain(a.Zone, child) {
		return fmt.Errorf("%s is not below the trust anchor's zone %s", child, a.Zone)
	}
	keys, err := a.zoneKeys(ctx, server, ask, now)
	if err != nil {
		return err
	}
	// Every signed RRset of the answer, by owner and type.
	type key struct {
		name string
		t    uint16
	}
	sets := map[key][]dns.RR{}
	var sigs []*dns.RRSIG
	for _, rr := range append(append([]dns.RR(nil), r.Answer...), r.Ns...) {
		if s, ok := rr.(*dns.RRSIG); ok {
			sigs = append(sigs, s)
			continue
		}
		k := key{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		sets[k] = append(sets[k], rr)
	}
	if ds := sets[key{child, dns.TypeDS}]; len(ds) > 0 {
		if !a.verified(ds, sigs, keys, now) {
			return fmt.Errorf("the DS RRset of %s is not signed, valid now, by %s's keys", child, a.Zone)
		}
		return nil
	}
	var nsec []*dns.NSEC
	var nsec3 []*dns.NSEC3
	for k, set := range sets {
		switch k.t {
		case dns.TypeNSEC, dns.TypeNSEC3:
			if !a.verified(set, sigs, keys, now) {
				continue
			}
			for _, rr := range set {
				switch x := rr.(type) {
				case *dns.NSEC:
					nsec = append(nsec, x)
				case *dns.NSEC3:
					nsec3 = append(nsec3, x)
				}
			}
		}
	}
	if deniedNSEC(child, nsec) || deniedNSEC3(child, a.Zone, nsec3) {
		return nil
	}
	return fmt.Errorf("no DS of %s, without a signed NSEC or NSEC3 proof that it has none", child)
}

// hasType says whether a type bitmap holds t.
func hasType(bitmap []uint16, t uint16) bool {
	for _, b := range bitmap {
		if b == t {
			return true
		}
	}
	return false
}

// deniedNSEC says whether validated NSEC records prove that name has no DS:
// an NSEC of name itself without DS (nor SOA: the parent's side of the
// cut), or one that covers name (no such name).
func deniedNSEC(name string, nsec []*dns.NSEC) bool {
	for _, n := range nsec {
		owner := strings.ToLower(n.Hdr.Name)
		if owner == name {
			if !hasType(n.TypeBitMap, dns.TypeDS) && !hasType(n.TypeBitMap, dns.TypeSOA) {
				return true
			}
			continue
		}
		// An NSEC of a delegation above name proves nothing of names
		// below the cut (another zone's).
		if dns.IsSubDomain(owner, name) && hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeSOA) {
			continue
		}
		next := strings.ToLower(n.NextDomain)
		if canonicalLess(owner, next) {
			if canonicalLess(owner, name) && canonicalLess(name, next) {
				return true
			}
		} else if canonicalLess(owner, name) && dns.IsSubDomain(next, name) {
			return true // after the last NSEC, whose next is the apex
		}
	}
	return false
}

// deniedNSEC3 says whether validated NSEC3 records prove that name has no
// DS (RFC 5155 8.5, 8.6): an NSEC3 matching name without DS (nor SOA), or
// a closest encloser proof: an ancestor matched and the next closer name
// covered (no such name, or an opt-out span, which holds no signed
// delegation).
func deniedNSEC3(name, zone string, nsec3 []*dns.NSEC3) bool {
	match := func(n string) *dns.NSEC3 {
		for _, r := range nsec3 {
			if r.Hash == dns.SHA1 && r.Match(n) {
				return r
			}
		}
		return nil
	}
	covered := func(n string) bool {
		for _, r := range nsec3 {
			if r.Hash == dns.SHA1 && !r.Match(n) && r.Cover(n) {
				return true
			}
		}
		return false
	}
	if m := match(name); m != nil {
		return !hasType(m.TypeBitMap, dns.TypeDS) && !hasType(m.TypeBitMap, dns.TypeSOA)
	}
	labels := dns.SplitDomainName(name)
	// Ancestors of name within the zone, nearest first.
	for i := 1; i < len(labels); i++ {
		ce := dns.Fqdn(strings.Join(labels[i:], "."))
		if !dns.IsSubDomain(zone, ce) {
			break
		}
		m := match(ce)
		if m == nil {
			continue
		}
		if hasType(m.TypeBitMap, dns.TypeNS) && !hasType(m.TypeBitMap, dns.TypeSOA) {
			return false // the closest encloser is a delegation: not this zone's name
		}
		next := dns.Fqdn(strings.Join(labels[i-1:], "."))
		return covered(next)
	}
	return false
}

// canonicalLess orders names as DNSSEC does (RFC 4034 6.1): label by label
// from the right, each compared as lower-case octets.
func canonicalLess(a, b string) bool {
	la, lb := dns.SplitDomainName(strings.ToLower(a)), dns.SplitDomainName(strings.ToLower(b))
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		x, y := unescape(la[i]), unescape(lb[j])
		if x != y {
			return x < y
		}
	}
	return len(la) < len(lb)
}

// unescape turns a label's presentation form (\DDD, \X) into its octets.
func unescape(l string) string {
	if !strings.Contains(l, `\`) {
		return l
	}
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		if l[i] != '\\' || i+1 >= len(l) {
			b.WriteByte(l[i])
			continue
		}
		if i+3 < len(l) && isDigit(l[i+1]) && isDigit(l[i+2]) && isDigit(l[i+3]) {
			n, _ := strconv.Atoi(l[i+1 : i+4])
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(l[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
