package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// verdict is what the gate concludes about one version.
type verdict struct {
	rep    *zonereview.Report
	sha256 string
	keys   []ledger.PublishKey
	// invalid: it fails validation (findings); rule1: a signing key is
	// not backed up; step: publishing it now could make the served
	// version bogus for a resolver that cached it (stepFindings).
	invalid, rule1, step   bool
	findings, stepFindings []Finding
	// stale: its serial is not newer than the served one's; same: it is
	// the served version.
	stale, same bool
	// sameSerial: the served serial, with other content.
	sameSerial bool
	// aged: held, its signatures came within the margin; published at its
	// deadline all the same (agedAtDeadline).
	aged   bool
	reason string
}

// passes says whether enforce mode publishes it.
func (v *verdict) passes() bool { return !v.invalid && !v.rule1 && !v.step && !v.stale && !v.same }

// newer says whether serial a is newer than b in RFC 1982 serial number
// arithmetic; a and b exactly 2^31 apart are undefined there, and so not
// newer.
func newer(a, b uint32) bool {
	return a != b && ((a > b && a-b < 1<<31) || (a < b && b-a > 1<<31))
}

// decide reviews the version in file for zone, served being what the name
// servers have (nil: nothing), and judges rule 1 and the step.
func (g *Gate) decide(ctx context.Context, f *facts, file *os.File, st *zoneState) (*verdict, error) {
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	now := g.now()
	// The DS set comes from the enforcer and the DS records, the DNSKEYs
	// from the file: the review reads the file once, so the DS set is
	// taken from a first pass over the apex only.
	h := sha256.New()
	opts := zonereview.Options{Now: now, Margin: f.margin(), Workers: g.Workers}
	var dsErr error
	var settled bool
	if f.enfErr == nil {
		apex, err := readApex(file, f.zone)
		if err != nil {
			return nil, err
		}
		if opts.ParentDS, settled, dsErr = f.parentDS(ctx, apex); dsErr != nil {
			return nil, dsErr
		}
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	rep, err := zonereview.Review(ctx, io.TeeReader(file, h), f.zone, opts)
	if err != nil {
		return nil, err
	}
	v := &verdict{rep: rep, sha256: hex.EncodeToString(h.Sum(nil))}
	if s := st.Served; s != nil {
		switch {
		case s.SHA256 == v.sha256:
			v.same, v.reason = true, fmt.Sprintf("serial %d is served already", rep.Serial)
			return v, nil
		case rep.Serial == s.Serial:
			v.sameSerial = true
		case !newer(rep.Serial, s.Serial):
			v.stale, v.reason = true, fmt.Sprintf("serial %d is not newer than the served serial %d", rep.Serial, s.Serial)
			return v, nil
		}
	}
	for i, fd := range rep.Findings {
		if fd.Severity != zonereview.Error {
			continue
		}
		if len(v.findings) < maxKeptFindings {
			v.findings = append(v.findings, findingOf(rep.Findings[i]))
		}
	}
	if !rep.Passed() {
		v.invalid = true
		v.reason = fmt.Sprintf("fails validation: %s", human.Count(rep.Errors, "error"))
	}
	v.keys = f.signingKeys(ctx, rep)
	v.rule1 = anyUnbacked(v.keys)
	if st.Served != nil {
		served := st.Served.Review.report(f.zone)
		proof := zonereview.Proof{ServedSince: st.Served.Since, LastSigned: st.LastSigned, PublishedSince: st.PublishedSince, DSSettled: settled}
		for _, sf := range zonereview.SafeStep(served, rep, now, proof) {
			if len(v.stepFindings) < maxKeptFindings {
				v.stepFindings = append(v.stepFindings, findingOf(sf))
			}
			v.step = true
		}
	}
	if !v.invalid {
		v.reason = v.heldFor()
	}
	return v, nil
}

// heldFor says why a valid version is held ("" when it is not).
func (v *verdict) heldFor() string {
	var why []string
	if v.rule1 {
		why = append(why, describeKeys(v.keys))
	}
	if v.step {
		why = append(why, "the step from the served version is not safe yet: "+v.stepFindings[0].Reason)
	}
	return strings.Join(why, "; ")
}

// readApex reads the apex's DNSKEYs from the start of a zone file: what
// the DS set is made from before the review (zonereview takes the DS set
// as an option, before it has read the DNSKEYs). Signers write the apex
// first; in a file that does not, no DNSKEY is found here and the review
// reports the DNSKEY RRset unanchored.
func readApex(file *os.File, zone string) (*zonereview.Report, error) {
	origin := dns.Fqdn(zone)
	zp := dns.NewZoneParser(io.LimitReader(file, apexBytes), origin, "")
	rep := &zonereview.Report{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if !strings.EqualFold(rr.Header().Name, origin) {
			break
		}
		if k, ok := rr.(*dns.DNSKEY); ok {
			rep.Keys = append(rep.Keys, zonereview.Key{Tag: k.KeyTag(), Algorithm: k.Algorithm, Flags: k.Flags, SEP: k.Flags&dns.SEP != 0, DNSKEY: k})
		}
	}
	return rep, nil
}

// apexBytes bounds how much of a file is read for its apex.
const apexBytes = 4 << 20

// deadlineOf is when a held version goes out: the served version's
// earliest signature expiry less the margin; nil when nothing is served.
func deadlineOf(st *zoneState) *time.Time {
	if st.Served == nil || st.Served.Deadline.IsZero() {
		return nil
	}
	d := st.Served.Deadline
	return &d
}
