package zonereview

import (
	"crypto"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The tests sign zones in memory: keys from miekg/dns, NSEC and NSEC3
// chains built here, RRSIGs by dns.RRSIG.Sign.

type testKey struct {
	dnskey *dns.DNSKEY
	priv   crypto.Signer
}

func (k testKey) tag() uint16 { return k.dnskey.KeyTag() }

var (
	keyMu    sync.Mutex
	keyCache = map[string]testKey{}
)

// newKey makes (once per name) a key of the algorithm for origin.
func newKey(t testing.TB, name, origin string, alg uint8, ksk bool) testKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	id := name + "/" + origin
	if k, ok := keyCache[id]; ok {
		return k
	}
	flags := uint16(256)
	if ksk {
		flags = 257
	}
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600}, Flags: flags, Protocol: 3, Algorithm: alg}
	bits := map[uint8]int{dns.ECDSAP256SHA256: 256, dns.ECDSAP384SHA384: 384, dns.RSASHA256: 2048, dns.RSASHA512: 2048, dns.RSASHA1: 2048, dns.RSASHA1NSEC3SHA1: 2048, dns.ED25519: 256}[alg]
	priv, err := k.Generate(bits)
	if err != nil {
		t.Fatalf("key %s: %v", name, err)
	}
	tk := testKey{dnskey: k, priv: priv.(crypto.Signer)}
	keyCache[id] = tk
	return tk
}

type signOpts struct {
	ksk, zsk   testKey
	nsec3      bool
	optOut     bool
	iterations uint16
	salt       string
	inception  time.Time
	expiration time.Time
}

// testNow is the time the tests review at; signatures are made around it.
var testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func defaultOpts(t testing.TB, origin string, alg uint8) signOpts {
	return signOpts{
		ksk:        newKey(t, "ksk"+algString(alg), origin, alg, true),
		zsk:        newKey(t, "zsk"+algString(alg), origin, alg, false),
		inception:  testNow.Add(-time.Hour),
		expiration: testNow.Add(30 * 24 * time.Hour),
	}
}

// signedZone is a zone as a list of records, to be broken by a test and
// written out.
type signedZone struct {
	origin string
	rrs    []dns.RR
	opts   signOpts
}

func parseText(t testing.TB, origin, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("test zone: %v", err)
	}
	return rrs
}

func mustWire(t testing.TB, s string) string {
	t.Helper()
	w, err := wireName(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sign signs the unsigned zone text: DNSKEYs at the apex, NSEC or NSEC3
// chain, RRSIGs over every authoritative RRset (the DNSKEY RRset by the
// KSK, the rest by the ZSK).
func sign(t testing.TB, origin, text string, o signOpts) *signedZone {
	t.Helper()
	rrs := parseText(t, origin, text)
	ksk, zsk := *o.ksk.dnskey, *o.zsk.dnskey
	rrs = append(rrs, &ksk, &zsk)
	if o.nsec3 {
		flags := uint8(0)
		rrs = append(rrs, &dns.NSEC3PARAM{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNSEC3PARAM, Class: dns.ClassINET, Ttl: 0}, Hash: dns.SHA1, Flags: flags, Iterations: o.iterations, Salt: saltOr(o.salt), SaltLength: uint8(len(o.salt) / 2)})
	}
	type node struct {
		name  string // presentation as given
		wire  string
		types map[uint16][]dns.RR
	}
	nodes := map[string]*node{}
	for _, rr := range rrs {
		w := mustWire(t, rr.Header().Name)
		n := nodes[w]
		if n == nil {
			n = &node{name: rr.Header().Name, wire: w, types: map[uint16][]dns.RR{}}
			nodes[w] = n
		}
		n.types[rr.Header().Rrtype] = append(n.types[rr.Header().Rrtype], rr)
	}
	var list []*node
	for _, n := range nodes {
		list = append(list, n)
	}
	sort.Slice(list, func(i, j int) bool { return compareNames(list[i].wire, list[j].wire) < 0 })
	originWire := mustWire(t, origin)
	// Classify.
	kind := map[string]int{}
	cut := ""
	for _, n := range list {
		switch {
		case n.wire == originWire:
			kind[n.wire] = kindApex
		case cut != "" && isBelow(n.wire, cut):
			kind[n.wire] = kindBelowCut
		case n.types[dns.TypeNS] != nil:
			cut = n.wire
			kind[n.wire] = kindInsecure
			if n.types[dns.TypeDS] != nil {
				kind[n.wire] = kindSecure
			}
		default:
			kind[n.wire] = kindAuth
		}
	}
	var out []dns.RR
	signSet := func(set []dns.RR, k testKey) {
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: set[0].Header().Ttl}, Algorithm: k.dnskey.Algorithm, KeyTag: k.tag(), SignerName: origin,
			Inception: uint32(o.inception.Unix()), Expiration: uint32(o.expiration.Unix())}
		if err := sig.Sign(k.priv, set); err != nil {
			t.Fatalf("sign %s %s: %v", set[0].Header().Name, typeString(set[0].Header().Rrtype), err)
		}
		out = append(out, sig)
	}
	bitmap := func(n *node, nsec bool) []uint16 {
		var ts []uint16
		signed := false
		for typ := range n.types {
			if kind[n.wire] == kindInsecure || kind[n.wire] == kindSecure {
				if typ != dns.TypeNS && typ != dns.TypeDS {
					continue
				}
			}
			ts = append(ts, typ)
			if typ != dns.TypeNS || kind[n.wire] == kindApex || kind[n.wire] == kindAuth {
				signed = true
			}
		}
		if nsec {
			ts = append(ts, dns.TypeNSEC)
			signed = true
		}
		if signed {
			ts = append(ts, dns.TypeRRSIG)
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		return ts
	}
	// Denial of existence.
	var chain []*node
	for _, n := range list {
		if kind[n.wire] != kindBelowCut {
			chain = append(chain, n)
		}
	}
	if !o.nsec3 {
		for i, n := range chain {
			next := chain[(i+1)%len(chain)]
			nsec := &dns.NSEC{Hdr: dns.RR_Header{Name: n.name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 300}, NextDomain: next.name, TypeBitMap: bitmap(n, true)}
			n.types[dns.TypeNSEC] = []dns.RR{nsec}
		}
	} else {
		type h3 struct {
			hash  string
			types []uint16
		}
		var hs []h3
		seen := map[string]bool{}
		needed := map[string]bool{} // ENTs with something other than an insecure delegation below
		ents := map[string]bool{}
		for _, n := range chain {
			seen[n.wire] = true
		}
		for _, n := range chain {
			for a := parentName(n.wire); a != originWire && isBelow(a, originWire); a = parentName(a) {
				if seen[a] {
					break
				}
				ents[a] = true
				if kind[n.wire] != kindInsecure {
					needed[a] = true
				}
			}
		}
		for _, n := range chain {
			if o.optOut && kind[n.wire] == kindInsecure {
				continue
			}
			hs = append(hs, h3{dns.HashName(n.name, dns.SHA1, o.iterations, saltOr(o.salt)), bitmap(n, false)})
		}
		for e := range ents {
			if o.optOut && !needed[e] {
				continue
			}
			hs = append(hs, h3{dns.HashName(presentation(e), dns.SHA1, o.iterations, saltOr(o.salt)), nil})
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].hash < hs[j].hash })
		for i, h := range hs {
			flags := uint8(0)
			if o.optOut {
				flags = 1
			}
			name := strings.ToLower(h.hash) + "." + origin
			x := &dns.NSEC3{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300}, Hash: dns.SHA1, Flags: flags, Iterations: o.iterations,
				Salt: saltOr(o.salt), SaltLength: uint8(len(o.salt) / 2), NextDomain: hs[(i+1)%len(hs)].hash, HashLength: 20, TypeBitMap: h.types}
			w := mustWire(t, name)
			nodes[w] = &node{name: name, wire: w, types: map[uint16][]dns.RR{dns.TypeNSEC3: {x}}}
			kind[w] = kindAuth
			list = append(list, nodes[w])
		}
		sort.Slice(list, func(i, j int) bool { return compareNames(list[i].wire, list[j].wire) < 0 })
	}
	for _, n := range list {
		var types []uint16
		for typ := range n.types {
			types = append(types, typ)
		}
		sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
		for _, typ := range types {
			set := n.types[typ]
			out = append(out, set...)
			k := kind[n.wire]
			switch {
			case k == kindBelowCut:
			case (k == kindSecure || k == kindInsecure) && typ != dns.TypeDS && typ != dns.TypeNSEC:
			case typ == dns.TypeDNSKEY:
				signSet(set, o.ksk)
			default:
				signSet(set, o.zsk)
			}
		}
	}
	return &signedZone{origin: origin, rrs: out, opts: o}
}

func saltOr(s string) string {
	if s == "" {
		return ""
	}
	return s
}

func (z *signedZone) text() string {
	var b strings.Builder
	for _, rr := range z.rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// find returns the index of the first record at owner of type typ (for an
// RRSIG, covering typ when covered is set).
func (z *signedZone) find(t testing.TB, owner string, typ uint16, sigOver uint16) int {
	t.Helper()
	w := mustWire(t, owner)
	for i, rr := range z.rrs {
		if mustWire(t, rr.Header().Name) != w || rr.Header().Rrtype != typ {
			continue
		}
		if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered != sigOver {
			continue
		}
		return i
	}
	t.Fatalf("no %s %s in the test zone", owner, typeString(typ))
	return -1
}

func (z *signedZone) remove(i int) { z.rrs = append(z.rrs[:i:i], z.rrs[i+1:]...) }

// insert puts rr right after index i.
func (z *signedZone) insert(i int, rr dns.RR) {
	z.rrs = append(z.rrs[:i+1:i+1], append([]dns.RR{rr}, z.rrs[i+1:]...)...)
}

// resign replaces the RRSIG at index i with one by k over the RRset it
// covers, changed by edit.
func (z *signedZone) resign(t testing.TB, i int, k testKey, edit func(*dns.RRSIG)) {
	t.Helper()
	old := z.rrs[i].(*dns.RRSIG)
	var set []dns.RR
	w := mustWire(t, old.Hdr.Name)
	for _, rr := range z.rrs {
		if rr.Header().Rrtype == old.TypeCovered && mustWire(t, rr.Header().Name) == w {
			set = append(set, rr)
		}
	}
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: old.Hdr.Ttl}, Algorithm: k.dnskey.Algorithm, KeyTag: k.tag(), SignerName: z.origin, Inception: old.Inception, Expiration: old.Expiration}
	if edit != nil {
		edit(sig)
	}
	if err := sig.Sign(k.priv, set); err != nil {
		t.Fatal(err)
	}
	z.rrs[i] = sig
}

// nsec3Owners lists the owners of the NSEC3 records, in hash order.
func (z *signedZone) nsec3Owners() []string {
	var out []string
	for _, rr := range z.rrs {
		if rr.Header().Rrtype == dns.TypeNSEC3 {
			out = append(out, rr.Header().Name)
		}
	}
	sort.Strings(out)
	return out
}
