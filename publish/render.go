package publish

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// Text and JSON renderings of what the gate did and knows. The documents
// are described by schema/publish-*.json.

// WriteResult prints what a run did with its version: one line, then a
// line per finding.
func WriteResult(w io.Writer, r *Result, dryRun bool) {
	prefix := ""
	if dryRun {
		prefix = "dry run: would be "
	}
	fmt.Fprintf(w, "zone %s serial %d: %s%s: %s\n", r.Zone, r.Serial, prefix, r.Action, r.Reason)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  %s\n", f)
	}
}

// WriteRelease prints a release: a line per version decided.
func WriteRelease(w io.Writer, rep *ReleaseReport) {
	for _, r := range rep.Results {
		fmt.Fprintf(w, "zone %s serial %d: %s: %s\n", r.Zone, r.Serial, r.Action, r.Reason)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	if len(rep.Results) == 0 && len(rep.Errors) == 0 {
		fmt.Fprintln(w, "nothing held or waiting")
	}
}

// ReleaseDoc is publish release's --json document.
func ReleaseDoc(rep *ReleaseReport) any {
	return struct {
		Schema string `json:"schema"`
		*ReleaseReport
	}{"ods-keyguard/publish-release/1", rep}
}

// StatusDoc is publish status's --json document: the zones, and the
// bypasses of every zone.
func StatusDoc(zones []ZoneStatus, bypasses []Alert) any {
	if bypasses == nil {
		bypasses = []Alert{}
	}
	return struct {
		Schema   string       `json:"schema"`
		Zones    []ZoneStatus `json:"zones"`
		Bypasses []Alert      `json:"bypasses"`
	}{"ods-keyguard/publish-status/1", zones, bypasses}
}

// WriteHistory prints the records: TIME ACTION ZONE SERIAL BY REASON.
func WriteHistory(w io.Writer, recs []ledger.PublishRecord) {
	for _, r := range recs {
		serial := "-"
		if r.Serial != 0 {
			serial = fmt.Sprint(r.Serial)
		}
		reason := human.OneLine(r.Reason)
		if len(r.Findings) > 0 {
			reason += ": " + r.Findings[0]
		}
		fmt.Fprintf(w, "%s %s %s %s %s %s\n", r.Time.UTC().Format(time.RFC3339), r.Action, r.Zone, serial, strings.ReplaceAll(r.By, " ", "_"), reason)
	}
}

// HistoryDoc is publish history's --json document.
func HistoryDoc(recs []ledger.PublishRecord) any {
	if recs == nil {
		recs = []ledger.PublishRecord{}
	}
	return struct {
		Schema  string                 `json:"schema"`
		Records []ledger.PublishRecord `json:"records"`
	}{"ods-keyguard/publish-history/1", recs}
}

// WriteReview prints a review: the verdict, the counts, the findings.
func WriteReview(w io.Writer, rep *zonereview.Report, took time.Duration) {
	verdict := "passes"
	if !rep.Passed() {
		verdict = fmt.Sprintf("fails: %s", human.Count(rep.Errors, "error"))
	}
	fmt.Fprintf(w, "zone %s serial %d: %s (%s, %s, %s of which %d verified, in %s)\n",
		strings.TrimSuffix(rep.Origin, "."), rep.Serial, verdict, human.Count(rep.Records, "record"), human.Count(rep.Names, "name"),
		human.Count(rep.Signatures, "signature"), rep.Verified, took.Round(time.Millisecond))
	if !rep.EarliestExpiration.IsZero() {
		fmt.Fprintf(w, "earliest signature expiration: %s\n", rep.EarliestExpiration.UTC().Format(time.RFC3339))
	}
	for _, k := range rep.Keys {
		signs := "signs nothing"
		for _, u := range rep.Signers {
			if u.Tag == k.Tag && u.Algorithm == k.Algorithm {
				signs = human.Count(u.Signatures, "signature")
			}
		}
		fmt.Fprintf(w, "key %d (algorithm %d, flags %d): %s\n", k.Tag, k.Algorithm, k.Flags, signs)
	}
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "%s\n", f)
	}
	if rep.FindingsTotal > len(rep.Findings) {
		fmt.Fprintf(w, "%s not shown\n", human.Count(rep.FindingsTotal-len(rep.Findings), "more finding"))
	}
}

// ReviewDoc is publish review's --json document.
func ReviewDoc(rep *zonereview.Report) any {
	type finding struct {
		Severity  string `json:"severity"`
		Code      string `json:"code"`
		Owner     string `json:"owner"`
		Type      string `json:"type"`
		KeyTag    int    `json:"keytag"`
		Algorithm int    `json:"algorithm"`
		Reason    string `json:"reason"`
	}
	type key struct {
		KeyTag     int  `json:"keytag"`
		Algorithm  int  `json:"algorithm"`
		Flags      int  `json:"flags"`
		Signatures int  `json:"signatures"`
		Supported  bool `json:"supported"`
	}
	doc := struct {
		Schema             string     `json:"schema"`
		Zone               string     `json:"zone"`
		Serial             uint32     `json:"serial"`
		Passed             bool       `json:"passed"`
		Errors             int        `json:"errors"`
		FindingsTotal      int        `json:"findings_total"`
		Findings           []finding  `json:"findings"`
		Keys               []key      `json:"keys"`
		EarliestExpiration *time.Time `json:"earliest_expiration"`
		Records            int        `json:"records"`
		Names              int        `json:"names"`
		Signatures         int        `json:"signatures"`
		Verified           int        `json:"verified"`
	}{Schema: "ods-keyguard/publish-review/1", Zone: strings.TrimSuffix(rep.Origin, "."), Serial: rep.Serial, Passed: rep.Passed(),
		Errors: rep.Errors, FindingsTotal: rep.FindingsTotal, Findings: []finding{}, Keys: []key{},
		Records: rep.Records, Names: rep.Names, Signatures: rep.Signatures, Verified: rep.Verified}
	if !rep.EarliestExpiration.IsZero() {
		t := rep.EarliestExpiration.UTC()
		doc.EarliestExpiration = &t
	}
	for _, f := range rep.Findings {
		doc.Findings = append(doc.Findings, finding{Severity: f.Severity.String(), Code: string(f.Code), Owner: f.Owner,
			Type: dns.TypeToString[f.Type], KeyTag: f.KeyTag, Algorithm: int(f.Algorithm), Reason: f.Reason})
	}
	for _, k := range rep.Keys {
		n := 0
		for _, u := range rep.Signers {
			if u.Tag == k.Tag && u.Algorithm == k.Algorithm {
				n = u.Signatures
			}
		}
		doc.Keys = append(doc.Keys, key{KeyTag: int(k.Tag), Algorithm: int(k.Algorithm), Flags: int(k.Flags), Signatures: n, Supported: k.Supported})
	}
	return doc
}
