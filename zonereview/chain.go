package zonereview

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// The kinds of names, found once all are read (glue can come before its
// delegation in an unsorted file).
const (
	kindAuth     = iota // authoritative data
	kindApex            // the zone's apex
	kindSecure          // a delegation with a DS RRset
	kindInsecure        // a delegation without
	kindBelowCut        // glue or occluded: below a delegation
)

// finish runs the checks that need the whole zone: signatures required by
// authority, the apex, the NSEC or NSEC3 chain and the DNSKEY's signers.
func (st *state) finish(ctx context.Context, z *zoneInfo) (*Report, error) {
	if !st.sorted {
		sort.SliceStable(st.names, func(i, j int) bool { return compareNames(st.names[i].name, st.names[j].name) < 0 })
	}
	st.mergeSplit(z)
	kinds := st.classify(z)
	st.checkSigned(z, kinds)
	st.checkApex(z, kinds)
	hasNSEC := false
	for i := range st.names {
		if st.names[i].nsecNext != "" {
			hasNSEC = true
			break
		}
	}
	nsec3 := len(st.nsec3) > 0 || len(z.nsec3param) > 0
	switch {
	case hasNSEC && nsec3:
		st.zoneFinding(z, Error, CodeNSECChain, dns.TypeNSEC3PARAM, "the zone has both NSEC and NSEC3 records")
		st.checkNSEC(z, kinds)
		st.checkNSEC3(ctx, z, kinds)
	case hasNSEC:
		st.checkNSEC(z, kinds)
	case nsec3:
		st.checkNSEC3(ctx, z, kinds)
	default:
		st.zoneFinding(z, Error, CodeNSECChain, dns.TypeNSEC, "the zone has neither NSEC nor NSEC3 records")
	}
	st.checkDNSKEY(z)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("zone %s: review stopped: %w", z.originText, err)
	}
	rep := st.report(z)
	rep.Findings = st.findings.sorted()
	rep.FindingsTotal = st.findings.total
	rep.Errors = st.findings.errors
	return rep, nil
}

func (st *state) zoneFinding(z *zoneInfo, sev Severity, code Code, typ uint16, reason string) {
	st.findings.add(z.origin, Finding{Severity: sev, Code: code, Owner: z.originText, Type: typ, KeyTag: -1, Reason: reason})
}

func (st *state) nameFinding(w string, sev Severity, code Code, typ uint16, reason string) {
	st.findings.add(w, Finding{Severity: sev, Code: code, Owner: presentation(w), Type: typ, KeyTag: -1, Reason: reason})
}

// mergeSplit joins entries of one name that the file had apart. An RRset
// in two places was verified in parts, which no resolver sees: a finding.
func (st *state) mergeSplit(z *zoneInfo) {
	if len(st.names) < 2 {
		return
	}
	out := st.names[:1]
	for _, e := range st.names[1:] {
		last := &out[len(out)-1]
		if last.name != e.name {
			out = append(out, e)
			continue
		}
		// Records or RRSIGs of one type in both parts.
		both := typeSet{}
		mine := last.types.union(last.sigged)
		for _, t := range e.types.union(e.sigged).list() {
			if mine.has(t) {
				both.add(t)
			}
		}
		for _, t := range both.list() {
			st.nameFinding(e.name, Error, CodeSplitRRset, t, fmt.Sprintf("the %s RRset of %s is in more than one place in the file: it was verified in parts", typeString(t), presentation(e.name)))
		}
		last.types = last.types.union(e.types)
		last.sigged = last.sigged.union(e.sigged)
		// A type verified in parts is not signed as a whole.
		last.signed = last.signed.union(e.signed).minus(both)
		last.anyRRSIG = last.anyRRSIG || e.anyRRSIG
		if e.nsecNext != "" {
			last.nsecNext, last.nsecTypes = e.nsecNext, e.nsecTypes
		}
	}
	for i := len(out); i < len(st.names); i++ {
		st.names[i] = nameEntry{}
	}
	st.names = out
}

// classify finds the apex, the delegations and what is below them. Names
// are in canonical order, so a delegation's descendants follow it.
func (st *state) classify(z *zoneInfo) []uint8 {
	kinds := make([]uint8, len(st.names))
	cut := ""
	for i := range st.names {
		e := &st.names[i]
		switch {
		case e.name == z.origin:
			kinds[i] = kindApex
		case cut != "" && isBelow(e.name, cut):
			kinds[i] = kindBelowCut
		case e.types.has(dns.TypeNS):
			cut = e.name
			kinds[i] = kindInsecure
			if e.types.has(dns.TypeDS) {
				kinds[i] = kindSecure
			}
		default:
			kinds[i] = kindAuth
		}
	}
	return kinds
}

// checkSigned: every authoritative RRset, the NSECs among them, has an
// RRSIG (rule 2). A type whose RRSIGs all failed has its findings already.
func (st *state) checkSigned(z *zoneInfo, kinds []uint8) {
	for i := range st.names {
		e := &st.names[i]
		var need typeSet
		switch kinds[i] {
		case kindBelowCut:
			if e.nsecNext != "" {
				st.nameFinding(e.name, Error, CodeNSECChain, dns.TypeNSEC, fmt.Sprintf("%s is below a delegation (glue or occluded) but has an NSEC", presentation(e.name)))
			}
			continue
		case kindSecure, kindInsecure:
			for _, t := range []uint16{dns.TypeDS, dns.TypeNSEC} {
				if e.types.has(t) {
					need.add(t)
				}
			}
		default:
			need = e.types
		}
		for _, t := range need.minus(e.sigged).list() {
			st.nameFinding(e.name, Error, CodeUnsigned, t, fmt.Sprintf("the %s RRset of %s has no RRSIG", typeString(t), presentation(e.name)))
		}
	}
}

func (st *state) checkApex(z *zoneInfo, kinds []uint8) {
	var apex *nameEntry
	if len(st.names) > 0 && kinds[0] == kindApex {
		apex = &st.names[0]
	}
	for _, t := range []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeDNSKEY} {
		if apex == nil || !apex.types.has(t) {
			st.zoneFinding(z, Error, CodeApex, t, fmt.Sprintf("the apex %s has no %s RRset", z.originText, typeString(t)))
		}
	}
}

// expectedBitmap is what an NSEC or NSEC3 at a name lists: its types, RRSIG
// when it has signatures, and NSEC for NSEC.
func expectedBitmap(e *nameEntry, nsec bool) typeSet {
	want := e.types
	if nsec {
		want.add(dns.TypeNSEC)
	} else {
		want = want.minus(typesOf([]uint16{dns.TypeNSEC}))
	}
	if e.anyRRSIG || (nsec && !e.sigged.empty()) {
		want.add(dns.TypeRRSIG)
	}
	return want
}

// bitmapOK compares a bitmap with the types at a name. At a delegation
// the glue at the same name may be listed or not.
func bitmapOK(got, want typeSet, kind uint8) bool {
	if got.equal(want) {
		return true
	}
	if kind != kindSecure && kind != kindInsecure {
		return false
	}
	var core typeSet
	for _, t := range []uint16{dns.TypeNS, dns.TypeDS, dns.TypeNSEC, dns.TypeRRSIG} {
		if want.has(t) {
			core.add(t)
		}
	}
	// got must hold the delegation's own types and nothing absent.
	return core.minus(got).empty() && got.minus(want).empty()
}

// checkNSEC: every authoritative name and delegation has an NSEC, the NSECs
// form one loop in canonical order from the apex back to it, and each
// bitmap lists the types at its name (rule 3).
func (st *state) checkNSEC(z *zoneInfo, kinds []uint8) {
	var chain []int
	for i := range st.names {
		if kinds[i] == kindBelowCut {
			continue
		}
		e := &st.names[i]
		if e.nsecNext == "" {
			st.nameFinding(e.name, Error, CodeNSECChain, dns.TypeNSEC, fmt.Sprintf("%s has no NSEC", presentation(e.name)))
			continue
		}
		chain = append(chain, i)
		if want := expectedBitmap(e, true); !bitmapOK(e.nsecTypes, want, kinds[i]) {
			st.nameFinding(e.name, Error, CodeNSECBitmap, dns.TypeNSEC, fmt.Sprintf("the NSEC of %s lists %s; the name has %s", presentation(e.name), e.nsecTypes, want))
		}
	}
	for k, i := range chain {
		e := &st.names[i]
		want := z.origin
		if k+1 < len(chain) {
			want = st.names[chain[k+1]].name
		}
		if e.nsecNext != want {
			st.nameFinding(e.name, Error, CodeNSECChain, dns.TypeNSEC, fmt.Sprintf("the NSEC of %s points to %s; the next name with an NSEC is %s", presentation(e.name), presentation(e.nsecNext), presentation(want)))
		}
	}
}

// hashed is a name the NSEC3 chain must (or, for opt-out, may) cover.
type hashed struct {
	hash [20]byte
	name int32 // index in names; -1 - i for the i-th empty non-terminal
	// optional: an insecure delegation, or an empty non-terminal with
	// only insecure delegations below it, which opt-out may skip.
	optional bool
}

// checkNSEC3: every authoritative name, delegation and empty non-terminal
// has an NSEC3 with the apex's parameters, except what an opt-out NSEC3
// covers; the NSEC3s form one loop in hash order; every NSEC3 is the hash of
// a name; bitmaps list the types at their names (rule 3).
func (st *state) checkNSEC3(ctx context.Context, z *zoneInfo, kinds []uint8) {
	if len(z.nsec3param) == 0 {
		st.zoneFinding(z, Error, CodeNSEC3Params, dns.TypeNSEC3PARAM, fmt.Sprintf("the zone has NSEC3 records but the apex %s has no NSEC3PARAM", z.originText))
	} else if len(z.nsec3param) > 1 {
		st.zoneFinding(z, Warning, CodeNSEC3Params, dns.TypeNSEC3PARAM, fmt.Sprintf("the apex has %d NSEC3PARAM records; the chain is checked with the first", len(z.nsec3param)))
	}
	// The chain: valid records, in hash order.
	recs := st.nsec3[:0]
	for _, r := range st.nsec3 {
		if r.valid {
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return bytes.Compare(recs[i].hash[:], recs[j].hash[:]) < 0 })
	owner := func(h [20]byte) string {
		w, _ := wireName(strings.ToLower(b32.EncodeToString(h[:])) + "." + z.originText)
		return w
	}
	for i := range recs {
		r := &recs[i]
		if i > 0 && r.hash == recs[i-1].hash {
			st.nameFinding(owner(r.hash), Error, CodeNSEC3Chain, dns.TypeNSEC3, fmt.Sprintf("%s has more than one NSEC3", presentation(owner(r.hash))))
		}
		if !r.sigged {
			st.nameFinding(owner(r.hash), Error, CodeUnsigned, dns.TypeNSEC3, fmt.Sprintf("the NSEC3 at %s has no RRSIG", presentation(owner(r.hash))))
		}
		next := recs[(i+1)%len(recs)].hash
		for j := i + 1; j < len(recs) && recs[j].hash == r.hash; j++ {
			next = recs[(j+1)%len(recs)].hash
		}
		if r.next != next {
			st.nameFinding(owner(r.hash), Error, CodeNSEC3Chain, dns.TypeNSEC3, fmt.Sprintf("the NSEC3 at %s points to %s; the next NSEC3 is %s",
				presentation(owner(r.hash)), strings.ToLower(b32.EncodeToString(r.next[:])), strings.ToLower(b32.EncodeToString(next[:]))))
		}
	}
	if len(z.nsec3param) == 0 || z.nsec3param[0].Hash != dns.SHA1 {
		return
	}
	p := z.nsec3param[0]
	salt, err := hex.DecodeString(p.Salt)
	if err != nil && p.Salt != "-" && p.Salt != "" {
		st.zoneFinding(z, Error, CodeNSEC3Params, dns.TypeNSEC3PARAM, fmt.Sprintf("the NSEC3PARAM salt %q is not hexadecimal", p.Salt))
		return
	}
	want, ents := st.expectedHashed(ctx, z, kinds, salt, p.Iterations)
	name := func(h hashed) string {
		if h.name >= 0 {
			return st.names[h.name].name
		}
		return ents[-1-h.name].name
	}
	// Walk both lists in hash order.
	j := 0
	for _, h := range want {
		for j < len(recs) && bytes.Compare(recs[j].hash[:], h.hash[:]) < 0 {
			j++
		}
		if j < len(recs) && recs[j].hash == h.hash {
			r := &recs[j]
			var e *nameEntry
			kind := uint8(kindAuth)
			if h.name >= 0 {
				e, kind = &st.names[h.name], kinds[h.name]
			} else {
				e = &nameEntry{}
			}
			if want := expectedBitmap(e, false); !bitmapOK(r.types, want, kind) {
				st.nameFinding(name(h), Error, CodeNSEC3Bitmap, dns.TypeNSEC3, fmt.Sprintf("the NSEC3 of %s (%s) lists %s; the name has %s",
					presentation(name(h)), strings.ToLower(b32.EncodeToString(h.hash[:])), r.types, want))
			}
			continue
		}
		// No NSEC3 for h: fine only under an opt-out NSEC3 that covers it.
		if h.optional && len(recs) > 0 {
			cover := recs[len(recs)-1]
			if j > 0 {
				cover = recs[j-1]
			}
			if cover.optOut {
				continue
			}
		}
		st.nameFinding(name(h), Error, CodeNSEC3Chain, dns.TypeNSEC3, fmt.Sprintf("%s (hash %s) has no NSEC3", presentation(name(h)), strings.ToLower(b32.EncodeToString(h.hash[:]))))
	}
	// NSEC3s that are the hash of no name.
	k := 0
	for _, r := range recs {
		for k < len(want) && bytes.Compare(want[k].hash[:], r.hash[:]) < 0 {
			k++
		}
		if k < len(want) && want[k].hash == r.hash {
			continue
		}
		if r.paramsOK {
			st.nameFinding(owner(r.hash), Error, CodeNSEC3Chain, dns.TypeNSEC3, fmt.Sprintf("the NSEC3 at %s is the hash of no name in the zone", presentation(owner(r.hash))))
		}
	}
}

type ent struct {
	name     string
	optional bool
}

// expectedHashed lists the names the NSEC3 chain covers, with their hashes,
// in hash order: authoritative names, delegations and the empty
// non-terminals above them.
func (st *state) expectedHashed(ctx context.Context, z *zoneInfo, kinds []uint8, salt []byte, iter uint16) ([]hashed, []ent) {
	var ents []ent
	has := func(w string) bool {
		i := sort.Search(len(st.names), func(i int) bool { return compareNames(st.names[i].name, w) >= 0 })
		return i < len(st.names) && st.names[i].name == w
	}
	var want []hashed
	for i := range st.names {
		k := kinds[i]
		if k == kindBelowCut {
			continue
		}
		want = append(want, hashed{name: int32(i), optional: k == kindInsecure})
		if k == kindApex {
			continue
		}
		for a := parentName(st.names[i].name); a != z.origin && isBelow(a, z.origin); a = parentName(a) {
			if has(a) {
				break
			}
			ents = append(ents, ent{name: a, optional: k == kindInsecure})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	uniq := ents[:0]
	for _, e := range ents {
		if n := len(uniq); n > 0 && uniq[n-1].name == e.name {
			uniq[n-1].optional = uniq[n-1].optional && e.optional
			continue
		}
		uniq = append(uniq, e)
	}
	ents = uniq
	for i, e := range ents {
		want = append(want, hashed{name: int32(-1 - i), optional: e.optional})
	}
	// Hash in parallel.
	workers := st.opts.Workers
	var wg sync.WaitGroup
	chunk := (len(want) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(want))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func(part []hashed) {
			defer wg.Done()
			for i := range part {
				if i%4096 == 0 && ctx.Err() != nil {
					return
				}
				n := part[i].name
				var w string
				if n >= 0 {
					w = st.names[n].name
				} else {
					w = ents[-1-n].name
				}
				part[i].hash = nsec3Hash(w, salt, iter)
			}
		}(want[lo:hi])
	}
	wg.Wait()
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].hash[:], want[j].hash[:]) < 0 })
	return want, ents
}

// nsec3Hash is RFC 5155 section 5: IH(salt, x, k).
func nsec3Hash(w string, salt []byte, iter uint16) [20]byte {
	h := sha1.New()
	h.Write([]byte(w))
	h.Write(salt)
	var sum [20]byte
	h.Sum(sum[:0])
	for i := 0; i < int(iter); i++ {
		h.Reset()
		h.Write(sum[:])
		h.Write(salt)
		h.Sum(sum[:0])
	}
	return sum
}

// checkDNSKEY: every apex key's algorithm is supported, and the DNSKEY
// RRset is signed by a SEP key (any key when none is SEP) whose DS the
// parent has, when the caller gave the parent's DS set (rule 4).
func (st *state) checkDNSKEY(z *zoneInfo) {
	anySEP := false
	for i, k := range z.dnskeys {
		v := &z.keys.keys[i]
		anySEP = anySEP || k.Flags&dns.SEP != 0
		if !v.supported {
			st.findings.add(z.origin, Finding{Severity: Error, Code: CodeUnsupported, Owner: z.originText, Type: dns.TypeDNSKEY, KeyTag: int(v.tag), Algorithm: v.alg,
				Reason: fmt.Sprintf("DNSKEY %d (%s) cannot be used by the review: %s", v.tag, algString(v.alg), v.why)})
		}
	}
	if len(z.dnskeys) == 0 {
		return
	}
	okSigner, okDS := false, false
	for i, k := range z.dnskeys {
		v := &z.keys.keys[i]
		u := st.uses[uint32(v.tag)<<8|uint32(v.alg)]
		if u == nil || !u.SignedDNSKEY || (anySEP && k.Flags&dns.SEP == 0) {
			continue
		}
		okSigner = true
		if st.opts.ParentDS == nil || dsMatches(k, st.opts.ParentDS) {
			okDS = true
		}
	}
	switch {
	case !okSigner && anySEP:
		st.zoneFinding(z, Error, CodeDNSKEYSigner, dns.TypeDNSKEY, fmt.Sprintf("the DNSKEY RRset of %s has no valid signature by a SEP key", z.originText))
	case !okSigner:
		st.zoneFinding(z, Error, CodeDNSKEYSigner, dns.TypeDNSKEY, fmt.Sprintf("the DNSKEY RRset of %s has no valid signature", z.originText))
	case !okDS:
		var tags []string
		for _, ds := range st.opts.ParentDS {
			tags = append(tags, fmt.Sprint(ds.KeyTag))
		}
		have := "the parent's DS set is empty"
		if len(tags) > 0 {
			have = "the parent has DS for key tags " + strings.Join(tags, " ")
		}
		st.zoneFinding(z, Error, CodeParentDS, dns.TypeDNSKEY, fmt.Sprintf("no key signing the DNSKEY RRset of %s matches a parent DS: %s", z.originText, have))
	}
}

// dsMatches says whether one of dss is the digest of k.
func dsMatches(k *dns.DNSKEY, dss []*dns.DS) bool {
	for _, ds := range dss {
		if ds.KeyTag != k.KeyTag() || ds.Algorithm != k.Algorithm {
			continue
		}
		if mine := k.ToDS(ds.DigestType); mine != nil && strings.EqualFold(mine.Digest, ds.Digest) {
			return true
		}
	}
	return false
}
