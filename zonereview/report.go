package zonereview

import (
	"container/heap"
	"fmt"
	"sort"
	"time"

	"github.com/miekg/dns"
)

// Severity says whether a finding makes the zone unfit to publish.
type Severity int

const (
	// Warning: worth a look, but no validating resolver fails on it.
	Warning Severity = iota
	// Error: the zone, or the step to it, must not be published.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Code names the rule a finding breaks, stable for programs to match.
type Code string

// The codes of Review and SafeStep.
const (
	CodeUnknownKey     Code = "unknown-key"       // an RRSIG's key tag and algorithm match no apex DNSKEY
	CodeBadSignature   Code = "bad-signature"     // the signature does not verify
	CodeUnsupported    Code = "unsupported"       // an algorithm (or key) the review cannot verify
	CodeExpired        Code = "expired"           // expiration before Now
	CodeExpiresSoon    Code = "expires-soon"      // expiration before Now+Margin
	CodeNotYetValid    Code = "not-yet-valid"     // inception after Now
	CodeBadRRSIG       Code = "bad-rrsig"         // signer name or label count wrong
	CodeUnsigned       Code = "unsigned"          // an authoritative RRset, NSEC or NSEC3 without an RRSIG
	CodeOrphanRRSIG    Code = "orphan-rrsig"      // an RRSIG over a type with no records at the name
	CodeSplitRRset     Code = "split-rrset"       // one RRset's records apart in the file
	CodeOutOfZone      Code = "out-of-zone"       // a name not at or below the origin
	CodeApex           Code = "apex"              // SOA, NS or DNSKEY missing at the apex
	CodeNSECChain      Code = "nsec-chain"        // a missing, extra or misdirected NSEC
	CodeNSECBitmap     Code = "nsec-bitmap"       // NSEC types differ from the RRsets at the name
	CodeNSEC3Chain     Code = "nsec3-chain"       // a missing, extra or misdirected NSEC3
	CodeNSEC3Bitmap    Code = "nsec3-bitmap"      // NSEC3 types differ from the RRsets at the name
	CodeNSEC3Params    Code = "nsec3-params"      // NSEC3 parameters differ from the apex NSEC3PARAM
	CodeDNSKEYSigner   Code = "dnskey-signer"     // the DNSKEY RRset lacks a signature by a SEP key
	CodeParentDS       Code = "parent-ds"         // no key signing the DNSKEY RRset has its DS at the parent
	CodeKeyRemoved     Code = "key-removed"       // SafeStep: a key whose signatures may be cached is dropped
	CodeKeyNotInServed Code = "key-not-published" // SafeStep: a key signs before caches know it
	CodeDNSKEYChain    Code = "dnskey-chain"      // SafeStep: next's DNSKEY RRset is not signed by a served signer
)

// Finding is one problem of the zone: a value, rendered by the caller.
type Finding struct {
	Severity Severity
	Code     Code
	Owner    string // the owner name, presentation format
	Type     uint16 // the RR type concerned (the covered type for an RRSIG)
	// KeyTag and Algorithm name the key concerned; KeyTag is -1 when
	// the finding concerns no key.
	KeyTag    int
	Algorithm uint8
	Reason    string // a sentence naming owner, type and key
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s %s: %s", f.Severity, f.Owner, typeString(f.Type), f.Reason)
}

// Key is one DNSKEY of the apex DNSKEY RRset.
type Key struct {
	Tag       uint16
	Algorithm uint8
	Flags     uint16
	SEP       bool // flags has the SEP bit (257: a KSK by convention)
	Supported bool // the review can verify this key's signatures
	DNSKEY    *dns.DNSKEY
}

// KeyUse is what one key (named by an RRSIG's key tag and algorithm) signed.
type KeyUse struct {
	Tag       uint16
	Algorithm uint8
	// InDNSKEY is false for a key tag and algorithm that no apex DNSKEY
	// has (the RRSIGs are then findings).
	InDNSKEY bool
	// Signatures counts the RRSIGs naming this key; Verified those that
	// verify cryptographically.
	Signatures, Verified int
	// SignedDNSKEY: a verified signature over the apex DNSKEY RRset.
	// SignedOther: a verified signature over any other RRset.
	SignedDNSKEY, SignedOther bool
	// MaxTTL is the largest TTL of the RRsets with a verified signature
	// by this key, the DNSKEY RRset included: how long a resolver may
	// cache something signed by it.
	MaxTTL uint32
}

// Report is the outcome of one review.
type Report struct {
	Origin string // the zone's name, presentation format
	Serial uint32 // the SOA serial (0 without a SOA)
	// Keys is the apex DNSKEY RRset, in file order; DNSKEYTTL its TTL.
	Keys      []Key
	DNSKEYTTL uint32
	// Signers has one entry per key tag and algorithm that made at least
	// one RRSIG, ordered by tag.
	Signers []KeyUse
	// NSEC3 is the apex NSEC3PARAM when the zone has one.
	NSEC3 *dns.NSEC3PARAM
	// EarliestExpiration is the earliest RRSIG expiration in the file
	// (zero without signatures): the zone must be re-signed before it.
	EarliestExpiration time.Time
	// MaxTTL is the largest TTL of any RRset.
	MaxTTL uint32
	// Counts.
	Records    int // resource records read
	Names      int // owner names, NSEC3 owners not counted
	RRsets     int // RRsets, RRSIGs not counted
	Signatures int // RRSIG records
	Verified   int // RRSIGs that verify cryptographically
	// Findings holds the first findings in canonical zone order, at most
	// Options.MaxFindings; FindingsTotal counts them all.
	// Errors counts the findings of severity Error, kept or not.
	Findings      []Finding
	FindingsTotal int
	Errors        int
}

// Passed says whether the review found nothing of severity Error.
func (r *Report) Passed() bool { return r.Errors == 0 }

// findingList keeps the first max findings in canonical zone order (owner,
// then type, then arrival) and counts the rest: a max-heap of the kept ones.
type findingList struct {
	max    int
	total  int
	errors int
	seq    uint64
	items  []findingItem
}

type findingItem struct {
	wire string // the owner in wire form, the sort key
	seq  uint64
	f    Finding
}

func (l *findingList) less(a, b findingItem) bool {
	if c := compareNames(a.wire, b.wire); c != 0 {
		return c < 0
	}
	if a.f.Type != b.f.Type {
		return a.f.Type < b.f.Type
	}
	return a.seq < b.seq
}

func (l *findingList) Len() int           { return len(l.items) }
func (l *findingList) Less(i, j int) bool { return l.less(l.items[j], l.items[i]) }
func (l *findingList) Swap(i, j int)      { l.items[i], l.items[j] = l.items[j], l.items[i] }
func (l *findingList) Push(x any)         { l.items = append(l.items, x.(findingItem)) }
func (l *findingList) Pop() any {
	x := l.items[len(l.items)-1]
	l.items = l.items[:len(l.items)-1]
	return x
}

func (l *findingList) add(wire string, f Finding) {
	l.total++
	if f.Severity == Error {
		l.errors++
	}
	l.seq++
	it := findingItem{wire: wire, seq: l.seq, f: f}
	if len(l.items) < l.max {
		heap.Push(l, it)
		return
	}
	if l.max > 0 && l.less(it, l.items[0]) {
		l.items[0] = it
		heap.Fix(l, 0)
	}
}

func (l *findingList) sorted() []Finding {
	items := append([]findingItem(nil), l.items...)
	sort.Slice(items, func(i, j int) bool { return l.less(items[i], items[j]) })
	out := make([]Finding, len(items))
	for i, it := range items {
		out[i] = it.f
	}
	return out
}
