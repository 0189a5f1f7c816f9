// Package zonereview reviews one signed DNS zone, read from a master file,
// before it is published: it owns the rules that decide whether a signed
// version validates on its own (every RRSIG verifies with a key of the apex
// DNSKEY RRset, every authoritative RRset and every NSEC or NSEC3 record has
// a signature valid for the margin asked, the NSEC or NSEC3 chain is whole,
// the DNSKEY RRset is signed by a key the parent vouches for), and whether
// replacing the served version with it is safe for resolvers that cached the
// served one (SafeStep).
//
// It knows nothing of OpenDNSSEC: its input is a zone file, the zone's name
// and, optionally, the parent's DS set, so any signer's output can go
// through it. Its output is a Report whose findings are values, first ones
// in canonical zone order; rendering them is the caller's business.
//
// Review streams the file: records are grouped by owner as they come,
// RRsets are verified in parallel and released, and only a compact summary
// of each name (its types, and its NSEC or NSEC3 data) is kept for the
// chain checks at the end. Signers write names in canonical order; the
// review does not need it (names are sorted at the end when they were not),
// but it does need each RRset's records and RRSIGs together and the apex
// among the first records: a split RRset is a finding, and an apex
// missing from the first 262,144 records is an error.
package zonereview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Options tune a review.
type Options struct {
	// Now is the time the signatures are judged at (time.Now when zero).
	Now time.Time
	// Margin: every signature must stay valid until at least Now+Margin.
	Margin time.Duration
	// Workers verifies signatures in parallel (GOMAXPROCS when zero).
	Workers int
	// ParentDS, when not nil, is the parent's DS set (or the one the
	// enforcer submitted): the DNSKEY RRset must be signed by a key that
	// one of them matches. nil skips that check; an empty, non-nil set
	// fails it.
	ParentDS []*dns.DS
	// MaxFindings caps the findings kept in the Report (100 when zero);
	// all are counted.
	MaxFindings int
}

// apexLimit is how many records may come before the apex's: until it is
// read the review holds them, since it needs the DNSKEY RRset.
const apexLimit = 1 << 18

// batchRecords is the size of the unit of work handed to a worker.
const batchRecords = 2048

// zoneInfo is what the apex says, read before any RRSIG is checked.
type zoneInfo struct {
	origin     string // wire
	originText string
	keys       *keySet
	dnskeys    []*dns.DNSKEY
	dnskeyTTL  uint32
	serial     uint32
	nsec3param []*dns.NSEC3PARAM
	now        time.Time
	until      time.Time
}

type run struct {
	owner string
	rrs   []dns.RR
}

type batch struct {
	runs    []run
	records int
	res     batchResult
	done    chan struct{}
}

// Review reads one signed zone in master-file format from r and reviews it
// as the zone origin. The error is only for what prevents a review (the
// file cannot be read or parsed, the context ends); what is wrong with the
// zone is in the Report's findings.
func Review(ctx context.Context, r io.Reader, origin string, opts Options) (*Report, error) {
	origin = dns.Fqdn(origin)
	originWire, err := wireName(origin)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxFindings == 0 {
		opts.MaxFindings = 100
	}
	st := &state{
		opts:     opts,
		findings: findingList{max: opts.MaxFindings},
		uses:     map[uint32]*KeyUse{},
		sorted:   true,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := make(chan *batch, opts.Workers)
	ordered := make(chan *batch, 4*opts.Workers)
	var wg sync.WaitGroup
	var zone *zoneInfo // set before the first batch is sent
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWorker()
			for b := range jobs {
				if ctx.Err() == nil {
					w.process(zone, b)
				}
				close(b.done)
			}
		}()
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for b := range ordered {
			<-b.done
			st.merge(&b.res)
		}
	}()
	submit := func(b *batch) {
		ordered <- b
		jobs <- b
	}
	stop := func() {
		close(jobs)
		close(ordered)
		wg.Wait()
		<-collected
	}

	zp := newFastParser(r, origin)
	var (
		cur     = &batch{done: make(chan struct{})}
		pending []*batch // held until the apex is read
		held    int
		runOpen bool
		this    run
	)
	endRun := func() {
		if !runOpen {
			return
		}
		runOpen = false
		if zone == nil && strings.EqualFold(this.owner, origin) {
			zone = readApex(originWire, origin, this.rrs, opts)
		}
		cur.runs = append(cur.runs, this)
		cur.records += len(this.rrs)
		this = run{}
		if cur.records < batchRecords {
			return
		}
		if zone == nil {
			pending = append(pending, cur)
		} else {
			for _, b := range pending {
				submit(b)
			}
			pending = nil
			submit(cur)
		}
		cur = &batch{done: make(chan struct{})}
	}
	var readErr error
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		if runOpen && !strings.EqualFold(h.Name, this.owner) {
			endRun()
			if ctx.Err() != nil {
				readErr = ctx.Err()
				break
			}
		}
		if !runOpen {
			runOpen = true
			this.owner = h.Name
		}
		this.rrs = append(this.rrs, rr)
		st.records++
		if zone == nil {
			held++
			if held > apexLimit {
				readErr = fmt.Errorf("zone %s: no records of the apex among the first %s: put the apex first", origin, human.Count(apexLimit, "record"))
				break
			}
		}
	}
	if readErr == nil {
		if err := zp.Err(); err != nil {
			readErr = fmt.Errorf("zone %s: %w", origin, err)
		}
	}
	if readErr == nil {
		endRun()
		if zone == nil {
			zone = readApex(originWire, origin, nil, opts)
		}
		for _, b := range pending {
			submit(b)
		}
		if len(cur.runs) > 0 {
			submit(cur)
		}
	}
	stop()
	if readErr == nil {
		readErr = ctx.Err()
	}
	if readErr != nil {
		if errors.Is(readErr, context.Canceled) || errors.Is(readErr, context.DeadlineExceeded) {
			return nil, fmt.Errorf("zone %s: review stopped: %w", origin, readErr)
		}
		return nil, readErr
	}
	return st.finish(ctx, zone)
}

// readApex takes the DNSKEY RRset, the serial and NSEC3PARAM from the
// apex's records.
func readApex(originWire, origin string, rrs []dns.RR, opts Options) *zoneInfo {
	z := &zoneInfo{
		origin:     originWire,
		originText: origin,
		now:        opts.Now,
		until:      opts.Now.Add(opts.Margin),
	}
	for _, rr := range rrs {
		switch x := rr.(type) {
		case *dns.DNSKEY:
			z.dnskeys = append(z.dnskeys, x)
			z.dnskeyTTL = x.Hdr.Ttl
		case *dns.SOA:
			z.serial = x.Serial
		case *dns.NSEC3PARAM:
			z.nsec3param = append(z.nsec3param, x)
		}
	}
	z.keys = newKeySet(z.dnskeys)
	return z
}

// state is the collector's: it alone touches it until the end.
type state struct {
	opts     Options
	findings findingList
	uses     map[uint32]*KeyUse
	names    []nameEntry
	nsec3    []nsec3Entry
	sorted   bool

	records, rrsets, sigs, verified int
	earliest                        time.Time
	maxTTL                          uint32
}

func (st *state) merge(r *batchResult) {
	for _, e := range r.names {
		if n := len(st.names); n > 0 && st.sorted && compareNames(st.names[n-1].name, e.name) >= 0 {
			st.sorted = false
		}
		st.names = append(st.names, e)
	}
	st.nsec3 = append(st.nsec3, r.nsec3...)
	for _, f := range r.findings {
		st.findings.add(f.wire, f.f)
	}
	for id, u := range r.uses {
		t := st.uses[id]
		if t == nil {
			c := *u
			st.uses[id] = &c
			continue
		}
		t.Signatures += u.Signatures
		t.Verified += u.Verified
		t.SignedDNSKEY = t.SignedDNSKEY || u.SignedDNSKEY
		t.SignedOther = t.SignedOther || u.SignedOther
		t.MaxTTL = max(t.MaxTTL, u.MaxTTL)
	}
	st.rrsets += r.rrsets
	st.sigs += r.sigs
	st.verified += r.verified
	if !r.earliest.IsZero() && (st.earliest.IsZero() || r.earliest.Before(st.earliest)) {
		st.earliest = r.earliest
	}
	st.maxTTL = max(st.maxTTL, r.maxTTL)
	*r = batchResult{}
}

// report builds the Report from the collected state and the apex.
func (st *state) report(z *zoneInfo) *Report {
	rep := &Report{
		Origin:             z.originText,
		Serial:             z.serial,
		DNSKEYTTL:          z.dnskeyTTL,
		EarliestExpiration: st.earliest,
		MaxTTL:             st.maxTTL,
		Records:            st.records,
		Names:              len(st.names),
		RRsets:             st.rrsets,
		Signatures:         st.sigs,
		Verified:           st.verified,
	}
	if len(z.nsec3param) > 0 {
		rep.NSEC3 = z.nsec3param[0]
	}
	for i, k := range z.dnskeys {
		v := z.keys.keys[i]
		rep.Keys = append(rep.Keys, Key{Tag: v.tag, Algorithm: v.alg, Flags: k.Flags, SEP: k.Flags&dns.SEP != 0, Supported: v.supported, DNSKEY: k})
	}
	for _, u := range st.uses {
		rep.Signers = append(rep.Signers, *u)
	}
	sort.Slice(rep.Signers, func(i, j int) bool {
		a, b := rep.Signers[i], rep.Signers[j]
		if a.Tag != b.Tag {
			return a.Tag < b.Tag
		}
		return a.Algorithm < b.Algorithm
	})
	return rep
}
