package hooks

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// What the hook commands print: text for people, and the JSON documents
// described by schema/hook-*.json.

// WritePending lists what the hooks keep back, then the input they
// rejected.
func WritePending(w io.Writer, b *ledger.DSBook) error {
	if len(b.Pending) == 0 {
		fmt.Fprintln(w, "nothing withheld")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tZONE\tKEYTAG\tSINCE\tREASON")
		for _, p := range b.Pending {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.Kind, p.Zone, p.KeyTag, p.Since.UTC().Format(human.Minute), p.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, r := range b.Rejected {
		fmt.Fprintf(w, "rejected %s: input %s: %s\n", r.Time.UTC().Format(human.Minute), r.Line, r.Reason)
	}
	return nil
}

// PendingDoc is hook pending's JSON document.
func PendingDoc(b *ledger.DSBook) any {
	type rejected struct {
		Time   time.Time `json:"time"`
		Input  string    `json:"input"`
		Reason string    `json:"reason"`
	}
	doc := struct {
		Pending  []*ledger.DSEntry `json:"pending"`
		Rejected []rejected        `json:"rejected"`
	}{Pending: b.Pending, Rejected: []rejected{}}
	if doc.Pending == nil {
		doc.Pending = []*ledger.DSEntry{}
	}
	for _, r := range b.Rejected {
		doc.Rejected = append(doc.Rejected, rejected{r.Time, r.Line, r.Reason})
	}
	return jsondoc.New("hook-pending", doc)
}

// ReleaseDoc is hook release's JSON document.
func ReleaseDoc(r *ReleaseReport) any {
	return jsondoc.New("hook-release", r)
}

// History is the DS events of zone ("" for all), oldest first.
func History(b *ledger.DSBook, zone string) []ledger.DSEvent {
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	evs := []ledger.DSEvent{}
	for _, e := range b.Events {
		if zone == "" || strings.EqualFold(e.Zone, zone) {
			evs = append(evs, e)
		}
	}
	return evs
}

// WriteHistory prints one line per event: TIME KIND ACTION ZONE KEYTAG BY
// WHAT, the last an operator's sentence (see eventText).
func WriteHistory(w io.Writer, evs []ledger.DSEvent) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tACTION\tZONE\tKEYTAG\tBY\tWHAT")
	for _, e := range evs {
		tag := "-"
		if e.KeyTag != 0 || e.Zone != "" {
			tag = strconv.Itoa(e.KeyTag)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), dash(e.Kind), e.Action, dash(e.Zone), tag, dash(e.By), dash(eventText(e)))
	}
	return tw.Flush()
}

// createdReason is the reason of the event that begins the DS records.
func createdReason(adopted int) string {
	switch adopted {
	case 0:
		return "no KSK or CSK had its DS at the parent before: nothing adopted"
	case 1:
		return "1 DS the enforcer had at the parent before is adopted (the adopted row)"
	}
	return fmt.Sprintf("%d DS the enforcer had at the parent before are adopted (the adopted rows)", adopted)
}

// oldCreated is how records before 2026-12 worded the created event.
var oldCreated = regexp.MustCompile(`^([0-9]+) DS records adopted$`)

// eventText says what an event means, for an operator: its reason, and
// for the events that carry none, what happened.
func eventText(e ledger.DSEvent) string {
	switch e.Action {
	case ledger.Created:
		why := e.Reason
		if m := oldCreated.FindStringSubmatch(why); m != nil {
			n, _ := strconv.Atoi(m[1])
			why = createdReason(n)
		}
		by := ""
		if e.By != "" {
			by = fmt.Sprintf(" (the first run of %s)", e.By)
		}
		return "ods-keyguard's DS records begin here" + by + "; " + why
	case ledger.Forwarding:
		if e.Reason == "" {
			return "the forward command is run (recorded before it runs)"
		}
	case ledger.Forwarded:
		if e.Reason == "" {
			if e.Kind == ledger.Retract {
				return "the forward command took the retraction to the registrar"
			}
			return "the forward command took the DS to the registrar"
		}
	}
	return e.Reason
}

// historyEvent is an event of hook history's JSON document, with its text.
type historyEvent struct {
	ledger.DSEvent
	Text string `json:"text"`
}

// HistoryDoc is hook history's JSON document.
func HistoryDoc(evs []ledger.DSEvent) any {
	out := make([]historyEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, historyEvent{e, eventText(e)})
	}
	return jsondoc.New("hook-history", struct {
		Events []historyEvent `json:"events"`
	}{out})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteStatus prints each zone's DS: a line per KSK or CSK, the parent's
// DS set, and the findings.
func WriteStatus(out io.Writer, zones []ZoneDS) error {
	w := bufio.NewWriter(out)
	for _, z := range zones {
		fmt.Fprintf(w, "zone %s\n", z.Zone)
		for _, k := range z.Keys {
			fmt.Fprintf(w, "  %s %d (key %s): the enforcer has its DS %s; records: %s; parent should hold it: %s%s\n",
				k.Role, k.KeyTag, k.Locator, enforcerDS(k.EnforcerDS, k.DSRecord), k.records(), yesNo(k.ShouldHold), k.atParent())
		}
		if z.Parent != nil {
			switch {
			case z.Parent.Err != nil:
				fmt.Fprintf(w, "  parent: UNREADABLE: %v\n", z.Parent.Err)
			case len(z.Parent.DS) == 0:
				fmt.Fprintf(w, "  parent: no DS (%s)\n", z.Parent.Source)
			default:
				var ds []string
				for _, d := range z.Parent.DS {
					ds = append(ds, d.String())
				}
				sort.Strings(ds)
				fmt.Fprintf(w, "  parent: DS %s (%s)\n", strings.Join(ds, ", "), z.Parent.Source)
			}
		}
		for _, f := range z.Findings {
			fmt.Fprintf(w, "  %s: %s: %s\n", f.Severity, f.Category, f.Text)
		}
	}
	return w.Flush()
}

// StatusDoc is hook status's JSON document.
func StatusDoc(zones []ZoneDS) any {
	if zones == nil {
		zones = []ZoneDS{}
	}
	return jsondoc.New("hook-status", struct {
		Zones []ZoneDS `json:"zones"`
	}{zones})
}

func (k KeyDS) records() string {
	var parts []string
	if k.Pending == nil {
		parts = append(parts, k.Known)
	}
	if k.Submitted != nil {
		parts = append(parts, "submission forwarded "+k.Submitted.UTC().Format(human.Minute))
	}
	if k.Retracted != nil {
		parts = append(parts, "retraction forwarded "+k.Retracted.UTC().Format(human.Minute))
	}
	if k.Pending != nil {
		parts = append(parts, fmt.Sprintf("%s since %s: %s", k.Pending.Action, k.Pending.Since.UTC().Format(human.Minute), k.Pending.Reason))
	}
	return strings.Join(parts, ", ")
}

func (k KeyDS) atParent() string {
	if k.AtParent == nil {
		return ""
	}
	return "; at the parent: " + yesNo(*k.AtParent)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// enforcerDS says in words where the enforcer has a key's DS: its
// dsAtParent and the state of its DS record, with the enforcer's own names
// after it for those who look them up ("not submitted yet (dsAtParent
// unsubmitted, DS record hidden)").
func enforcerDS(atParent, record string) string {
	words := map[string]string{
		"unsubmitted": "not submitted yet",
		"submit":      "to be submitted",
		"submitted":   "submitted, not yet seen at the parent",
		"seen":        "seen at the parent",
		"retract":     "to be retracted",
		"retracted":   "retracted, not yet gone from the parent",
	}[atParent]
	if words == "" {
		words = atParent
	}
	return fmt.Sprintf("%s (dsAtParent %s, DS record %s)", words, atParent, record)
}
