package zonereview

import (
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// nameEntry is what the chain checks keep of one owner name.
type nameEntry struct {
	name      string  // wire, lower case
	types     typeSet // the types with records, RRSIG not counted
	sigged    typeSet // the types with at least one RRSIG
	signed    typeSet // the types with a verified RRSIG valid until Now+Margin
	nsecTypes typeSet // the NSEC's type bitmap
	nsecNext  string  // the NSEC's next name (wire), "" without an NSEC
	anyRRSIG  bool
}

// nsec3Entry is what the chain checks keep of one NSEC3 record.
type nsec3Entry struct {
	hash, next [20]byte
	types      typeSet
	valid      bool // owner and next are SHA-1 hashes, one label below the apex
	optOut     bool
	paramsOK   bool // the apex NSEC3PARAM's algorithm, iterations and salt
	sigged     bool
	signed     bool
}

type pendingFinding struct {
	wire string
	f    Finding
}

// batchResult is a worker's output for one batch, merged in file order.
type batchResult struct {
	names    []nameEntry
	nsec3    []nsec3Entry
	findings []pendingFinding
	uses     map[uint32]*KeyUse

	rrsets, sigs, verified int
	earliest               time.Time
	maxTTL                 uint32
}

type rrsetAcc struct {
	typ  uint16
	rrs  []dns.RR
	sigs []*dns.RRSIG
}

type worker struct {
	hs     *hashers
	buf    []byte // packing
	arena  []byte // an RRset's canonical RDATA
	data   []byte // what a signature signs
	sig    []byte // a signature, decoded
	digest [64]byte
	sets   []rrsetAcc
}

func newWorker() *worker { return &worker{hs: newHashers()} }

func (w *worker) process(z *zoneInfo, b *batch) {
	b.res.uses = map[uint32]*KeyUse{}
	for i := range b.runs {
		w.run(z, &b.runs[i], &b.res)
		b.runs[i] = run{} // release the records
	}
}

var b32 = base32.HexEncoding.WithPadding(base32.NoPadding)

func (w *worker) run(z *zoneInfo, r *run, res *batchResult) {
	owner, err := wireName(r.owner)
	if err != nil || !isBelow(owner, z.origin) {
		res.findings = append(res.findings, pendingFinding{owner, Finding{Severity: Error, Code: CodeOutOfZone, Owner: r.owner, Type: r.rrs[0].Header().Rrtype, KeyTag: -1,
			Reason: fmt.Sprintf("%s is not in zone %s: its %s ignored", r.owner, z.originText, human.Count(len(r.rrs), "record is", "records are"))}})
		return
	}
	add := func(f Finding) {
		f.Owner = r.owner
		res.findings = append(res.findings, pendingFinding{owner, f})
	}
	// Group the records into RRsets; RRSIGs go with the type they cover.
	sets := w.sets[:0]
	find := func(t uint16) *rrsetAcc {
		for i := range sets {
			if sets[i].typ == t {
				return &sets[i]
			}
		}
		sets = append(sets, rrsetAcc{typ: t})
		return &sets[len(sets)-1]
	}
	for _, rr := range r.rrs {
		if sig, ok := rr.(*dns.RRSIG); ok {
			s := find(sig.TypeCovered)
			s.sigs = append(s.sigs, sig)
			continue
		}
		s := find(rr.Header().Rrtype)
		s.rrs = append(s.rrs, rr)
	}
	var e nameEntry
	e.name = owner
	var n3 []nsec3Entry
	for i := range sets {
		s := &sets[i]
		if len(s.rrs) == 0 {
			// Kept, so that records of the type elsewhere in the
			// file show up as a split RRset.
			e.sigged.add(s.typ)
			for _, sig := range s.sigs {
				res.sigs++
				add(Finding{Severity: Warning, Code: CodeOrphanRRSIG, Type: s.typ, KeyTag: int(sig.KeyTag), Algorithm: sig.Algorithm,
					Reason: fmt.Sprintf("an RRSIG by key %d, covering %s, which has no records at %s", sig.KeyTag, typeString(s.typ), r.owner)})
			}
			continue
		}
		res.rrsets++
		ttl := s.rrs[0].Header().Ttl
		res.maxTTL = max(res.maxTTL, ttl)
		good := w.verifySet(z, owner, r.owner, s, ttl, res, add)
		if s.typ == dns.TypeNSEC3 {
			for _, rr := range s.rrs {
				n3 = append(n3, w.nsec3(z, owner, r.owner, rr.(*dns.NSEC3), add))
				n3[len(n3)-1].sigged = len(s.sigs) > 0
				n3[len(n3)-1].signed = good
			}
			continue
		}
		e.types.add(s.typ)
		if len(s.sigs) > 0 {
			e.sigged.add(s.typ)
			e.anyRRSIG = true
		}
		if good {
			e.signed.add(s.typ)
		}
		if s.typ == dns.TypeNSEC {
			nsec := s.rrs[0].(*dns.NSEC)
			if len(s.rrs) > 1 {
				add(Finding{Severity: Error, Code: CodeNSECChain, Type: dns.TypeNSEC, KeyTag: -1,
					Reason: fmt.Sprintf("%s has %d NSEC records; a name has one", r.owner, len(s.rrs))})
			}
			next, err := wireName(nsec.NextDomain)
			if err != nil {
				next = "\x00"
			}
			e.nsecNext = next
			e.nsecTypes = typesOf(nsec.TypeBitMap)
		}
	}
	for i := range sets {
		sets[i] = rrsetAcc{}
	}
	w.sets = sets[:0]
	if !e.types.empty() || !e.sigged.empty() {
		res.names = append(res.names, e)
	}
	res.nsec3 = append(res.nsec3, n3...)
}

// verifySet checks every RRSIG over one RRset and says whether one of them
// verifies and is valid from Now to Now+Margin.
func (w *worker) verifySet(z *zoneInfo, owner, ownerText string, s *rrsetAcc, ttl uint32, res *batchResult, add func(Finding)) bool {
	if len(s.sigs) == 0 {
		return false
	}
	var set canonicalRRset
	var err error
	set, w.buf, w.arena, err = makeCanonical(s.rrs, w.buf, w.arena)
	packed := err == nil
	var timeFindings []Finding
	good := false
	for _, sig := range s.sigs {
		res.sigs++
		exp, inc := absTime(sig.Expiration, z.now), absTime(sig.Inception, z.now)
		if res.earliest.IsZero() || exp.Before(res.earliest) {
			res.earliest = exp
		}
		base := Finding{Severity: Error, Type: s.typ, KeyTag: int(sig.KeyTag), Algorithm: sig.Algorithm}
		// Said only when something is wrong: most RRSIGs are fine.
		what := func() string {
			return fmt.Sprintf("the RRSIG by key %d (%s) over the %s RRset of %s", sig.KeyTag, algString(sig.Algorithm), typeString(s.typ), ownerText)
		}
		fail := func(code Code, reason string) {
			f := base
			f.Code, f.Reason = code, what()+" "+reason
			add(f)
		}
		id := uint32(sig.KeyTag)<<8 | uint32(sig.Algorithm)
		use := res.uses[id]
		if use == nil {
			use = &KeyUse{Tag: sig.KeyTag, Algorithm: sig.Algorithm}
			res.uses[id] = use
		}
		use.Signatures++
		signer, err := wireName(sig.SignerName)
		if err != nil || signer != z.origin {
			fail(CodeBadRRSIG, fmt.Sprintf("names signer %s, not the zone %s", sig.SignerName, z.originText))
			continue
		}
		sigOwner, ok := wildcardOwner(owner, int(sig.Labels))
		if !ok || (sigOwner != owner && !(strings.HasPrefix(owner, "\x01*") && int(sig.Labels) == labelCount(owner)-1)) {
			fail(CodeBadRRSIG, fmt.Sprintf("has label count %d, %s has %d", sig.Labels, ownerText, labelCount(owner)))
			continue
		}
		cands := z.keys.byTagAlg[id]
		if len(cands) == 0 {
			f := base
			f.Code = CodeUnknownKey
			f.Reason = fmt.Sprintf("the %s RRset of %s is signed by key %d, not in the DNSKEY RRset (algorithm %s)", typeString(s.typ), ownerText, sig.KeyTag, algString(sig.Algorithm))
			add(f)
			continue
		}
		use.InDNSKEY = true
		supported := false
		for _, c := range cands {
			supported = supported || z.keys.keys[c].supported
		}
		if !supported {
			fail(CodeUnsupported, "cannot be verified: "+z.keys.keys[cands[0]].why)
			continue
		}
		if !packed {
			fail(CodeBadSignature, fmt.Sprintf("covers records that cannot be packed: %v", err))
			continue
		}
		if n := base64.StdEncoding.DecodedLen(len(sig.Signature)); cap(w.sig) < n {
			w.sig = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(w.sig[:cap(w.sig)], []byte(sig.Signature))
		if err != nil {
			fail(CodeBadSignature, "has a signature that is not base64")
			continue
		}
		raw := w.sig[:n]
		w.data = signedData(w.data[:0], sig, signer, sigOwner, &set)
		verified := false
		for _, c := range cands {
			k := &z.keys.keys[c]
			if k.supported && k.check(w.hs.forAlg(k.alg), w.data, raw, &w.digest) {
				verified = true
				break
			}
		}
		if !verified {
			fail(CodeBadSignature, "does not verify")
			continue
		}
		res.verified++
		use.Verified++
		if s.typ == dns.TypeDNSKEY && owner == z.origin {
			use.SignedDNSKEY = true
		} else {
			use.SignedOther = true
		}
		use.MaxTTL = max(use.MaxTTL, ttl)
		layout := "2006-01-02 15:04:05 UTC"
		switch {
		case inc.After(z.now):
			f := base
			f.Code, f.Reason = CodeNotYetValid, fmt.Sprintf("%s is not valid before %s", what(), inc.Format(layout))
			timeFindings = append(timeFindings, f)
		case exp.Before(z.now):
			f := base
			f.Code, f.Reason = CodeExpired, fmt.Sprintf("%s expired at %s", what(), exp.Format(layout))
			timeFindings = append(timeFindings, f)
		case exp.Before(z.until):
			f := base
			f.Code, f.Reason = CodeExpiresSoon, fmt.Sprintf("%s expires at %s, within the margin (valid until %s needed)", what(), exp.Format(layout), z.until.UTC().Format(layout))
			timeFindings = append(timeFindings, f)
		default:
			good = true
		}
	}
	// A signature out of its time beside a good one fails no resolver.
	for _, f := range timeFindings {
		if good {
			f.Severity = Warning
		}
		add(f)
	}
	return good
}

// nsec3 reads one NSEC3 record into its compact form.
func (w *worker) nsec3(z *zoneInfo, owner, ownerText string, x *dns.NSEC3, add func(Finding)) nsec3Entry {
	e := nsec3Entry{types: typesOf(x.TypeBitMap), optOut: x.Flags&1 != 0}
	bad := func(reason string) nsec3Entry {
		add(Finding{Severity: Error, Code: CodeNSEC3Chain, Type: dns.TypeNSEC3, KeyTag: -1, Reason: reason})
		return nsec3Entry{}
	}
	if parentName(owner) != z.origin {
		return bad(fmt.Sprintf("NSEC3 owner %s is not one label below the apex", ownerText))
	}
	if x.Hash != dns.SHA1 {
		add(Finding{Severity: Error, Code: CodeUnsupported, Type: dns.TypeNSEC3, KeyTag: -1,
			Reason: fmt.Sprintf("NSEC3 at %s uses hash algorithm %d; only SHA-1 (1) is defined", ownerText, x.Hash)})
		return nsec3Entry{}
	}
	label := owner[1 : 1+int(owner[0])]
	h, err := b32.DecodeString(strings.ToUpper(label))
	if err != nil || len(h) != 20 {
		return bad(fmt.Sprintf("NSEC3 owner %s is not a base32hex SHA-1 hash", ownerText))
	}
	next, err := b32.DecodeString(strings.ToUpper(x.NextDomain))
	if err != nil || len(next) != 20 {
		return bad(fmt.Sprintf("NSEC3 at %s has next hashed owner %s, not a base32hex SHA-1 hash", ownerText, x.NextDomain))
	}
	copy(e.hash[:], h)
	copy(e.next[:], next)
	e.valid = true
	for _, p := range z.nsec3param {
		if p.Hash == x.Hash && p.Iterations == x.Iterations && strings.EqualFold(p.Salt, x.Salt) {
			e.paramsOK = true
		}
	}
	if len(z.nsec3param) > 0 && !e.paramsOK {
		p := z.nsec3param[0]
		add(Finding{Severity: Error, Code: CodeNSEC3Params, Type: dns.TypeNSEC3, KeyTag: -1,
			Reason: fmt.Sprintf("NSEC3 at %s has algorithm %d, iterations %d, salt %s; the apex NSEC3PARAM has %d, %d, %s",
				ownerText, x.Hash, x.Iterations, saltText(x.Salt), p.Hash, p.Iterations, saltText(p.Salt))})
	}
	return e
}

func saltText(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
