package check

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
	"github.com/ods-keyguard/ods-keyguard/publish"
)

// Perf splits the report's performance data in two: the core figures that
// go on the first line, and the rest (per repository and pool), which goes
// on the last line of the long output. Only what was measured appears.
func (rep *Report) Perf() (core, rest []Perf) {
	zero := Float(0)
	if !rep.Measured {
		return nil, nil
	}
	core = append(core, Perf{Label: "unbacked_in_use", Value: float64(len(rep.Unbacked)), Crit: "0", Min: zero})
	if rep.Missing != nil {
		core = append(core, Perf{Label: "missing_keys", Value: float64(*rep.Missing), Crit: "0", Min: zero})
	}
	if rep.Withheld != nil {
		core = append(core, Perf{Label: "withheld_submissions", Value: float64(*rep.Withheld), Warn: "0", Min: zero})
	}
	if rep.TokensRecorded != nil {
		core = append(core, Perf{Label: "token_record_age", Value: math.Max(0, math.Floor(rep.Ran.Sub(*rep.TokensRecorded).Seconds())), UOM: "s",
			Crit: fmt.Sprint(int64(rep.Options.TokenMaxAge.Seconds())), Min: zero})
	}
	opt := rep.Options
	for _, a := range rep.Backups {
		if a.Last == nil {
			continue
		}
		rest = append(rest, Perf{Label: "backup_age " + a.Repository, Value: math.Max(0, a.Age.Seconds()), UOM: "s",
			Warn: fmt.Sprint(int64(opt.Interval.Seconds())), Crit: fmt.Sprint(int64((opt.Interval + opt.Grace).Seconds())), Min: zero})
	}
	for _, p := range rep.Pools {
		rest = append(rest,
			Perf{Label: p.Name() + " spare", Value: float64(p.Spare), Warn: opt.Warn.Text, Crit: opt.Crit.Text},
			Perf{Label: p.Name() + " covered", Value: float64(p.Covered), Min: zero})
		if !p.RunsOut.IsZero() {
			rest = append(rest, Perf{Label: p.Name() + " seconds_left", Value: math.Max(0, math.Floor(p.RunsOut.Sub(rep.At).Seconds())), UOM: "s", Min: zero})
		}
	}
	return core, rest
}

// textBudget bounds the plugin output: Nagios keeps 8 KiB of it
// (MAX_PLUGIN_OUTPUT_LENGTH 8192, perfdata included) and drops the rest, so
// the text stays within 8,000 bytes whatever the number of findings.
// Beyond it, findings are summed up per state and category, with a count;
// --json carries every one.
const textBudget = 8000

// maxLine bounds one line of the long output.
const maxLine = 1024

// Text writes the plugin output: "KEYGUARD STATE - summary | perfdata",
// a line per finding, a line per pool, and the rest of the perfdata, all
// within textBudget bytes: the first line and the perfdata always, then
// what fits, the worst first, and a count of what did not.
func (rep *Report) Text(w io.Writer) {
	core, rest := rep.Perf()
	first := fmt.Sprintf("KEYGUARD %s - %s", rep.State, rep.Summary)
	if len(core) > 0 {
		first += " | " + Perfdata(core)
	}
	// The perfdata line: whole items while they fit in a quarter of the
	// budget (figures per pool; a site with hundreds of pools reads the
	// rest in --json or the Prometheus textfile).
	var perf []string
	used := 0
	for _, p := range rest {
		item := Perfdata([]Perf{p})
		if used+len(item)+1 > textBudget/4 {
			break
		}
		perf = append(perf, item)
		used += len(item) + 1
	}
	tail := ""
	if len(perf) > 0 {
		tail = "| " + strings.Join(perf, " ") + "\n"
	}
	left := textBudget - len(first) - 1 - len(tail)
	var body []string
	// skipped counts what did not fit, by "STATE: category".
	skipped := map[string]int{}
	var order []string
	note := len("CRITICAL: presence: 999999 more findings not shown (check --json lists them all)\n")
	// Room is kept for a count line per category left out, and one for
	// the pools left out.
	reserve := func() int { return note * (len(order) + 2) }
	for _, f := range rep.Findings {
		line := clip(fmt.Sprintf("%s: %s: %s", f.State, f.Category, f.Text))
		key := fmt.Sprintf("%s: %s", f.State, f.Category)
		if skipped[key] == 0 && len(line)+1 <= left-reserve() {
			body = append(body, line)
			left -= len(line) + 1
			continue
		}
		if skipped[key] == 0 {
			order = append(order, key)
		}
		skipped[key]++
	}
	for _, key := range order {
		line := fmt.Sprintf("%s: %s not shown (check --json lists them all)", key, human.Count(skipped[key], "more finding"))
		body = append(body, line)
		left -= len(line) + 1
	}
	if rep.TokensRecorded != nil {
		line := fmt.Sprintf("tokens: as ods-keyguard scan recorded them %s ago (%s), at most %s old; keys the record lacks read from the tokens",
			human.Duration(rep.Ran.Sub(*rep.TokensRecorded)), rep.TokensRecorded.Format(human.Minute), human.Duration(rep.Options.TokenMaxAge))
		body = append(body, line)
		left -= len(line) + 1
	}
	pools := 0
	for _, p := range rep.Pools {
		runs := ", backed-up keys last beyond ten years"
		switch {
		case p.Covered == 0:
			runs = ", no backed-up key to hand out"
		case !p.RunsOut.IsZero():
			runs = ", backed-up keys last until " + p.RunsOut.Format(human.Minute)
		}
		extra := ""
		switch {
		case p.Idle:
			extra = ", no zone uses it"
		case p.Manual:
			extra = ", manual rollover"
		}
		line := clip(fmt.Sprintf("pool %s: %d unused, %d backed up at the head, %d needed until %s, spare %d%s%s",
			p.Name(), p.Unused, p.Covered, p.Needed, p.Until.Format(human.Minute), p.Spare, runs, extra))
		if len(line)+1 > left-note {
			break
		}
		body = append(body, line)
		left -= len(line) + 1
		pools++
	}
	if n := len(rep.Pools) - pools; n > 0 {
		body = append(body, fmt.Sprintf("%s not shown (check --json lists them all)", human.Count(n, "more pool")))
	}
	fmt.Fprintln(w, first)
	for _, l := range body {
		fmt.Fprintln(w, l)
	}
	fmt.Fprint(w, tail)
}

// clip cuts a line to maxLine bytes, on a character boundary.
func clip(s string) string {
	if len(s) <= maxLine {
		return s
	}
	cut := maxLine - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// CheckName is the name of check's JSON document (schema/check.json).
const CheckName = "check"

// JSON writes the same verdict as a document.
func (rep *Report) JSON(w io.Writer) error {
	core, rest := rep.Perf()
	doc := jsondoc.New(CheckName, struct {
		Exit int `json:"exit"`
		*Report
		Perfdata string `json:"perfdata"`
	}{int(rep.State), rep, Perfdata(append(core, rest...))})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// Prometheus renders the figures in the node_exporter textfile format: the
// verdict, whether the run could determine it, when it ran, and only the
// figures this run measured, in base units.
func (rep *Report) Prometheus() string {
	var b strings.Builder
	metric := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	// A token that could not be read leaves the rest measured (and
	// written below) but the state undetermined: up is 0 for any UNKNOWN.
	up := 0
	if rep.Measured && rep.State != StateUnknown {
		up = 1
	}
	metric("ods_keyguard_up", "1 when the last check could determine the state, 0 when it could not (UNKNOWN).", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_up %d\n", up)
	metric("ods_keyguard_state", "Verdict of the last check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_state %d\n", rep.State)
	metric("ods_keyguard_last_run_timestamp_seconds", "When the last check ran, in seconds since the epoch.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_last_run_timestamp_seconds %d\n", rep.Ran.Unix())
	if !rep.Measured {
		return b.String()
	}
	metric("ods_keyguard_unbacked_in_use", "Key uses (zone, role) in use without a confirmed backup.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_unbacked_in_use %d\n", len(rep.Unbacked))
	if rep.Missing != nil {
		metric("ods_keyguard_missing_keys", "Enforcer keys missing from a token or mirror.", "gauge")
		fmt.Fprintf(&b, "ods_keyguard_missing_keys %d\n", *rep.Missing)
	}
	if rep.Withheld != nil {
		metric("ods_keyguard_withheld_submissions", "DS submissions and retractions the hooks keep back.", "gauge")
		fmt.Fprintf(&b, "ods_keyguard_withheld_submissions %d\n", *rep.Withheld)
	}
	if rep.Publish != nil {
		counts := map[string]int{}
		for _, a := range rep.Publish {
			counts[a.Kind]++
		}
		metric("ods_keyguard_publish_alerts", "Open problems of the publish gate, by kind: held, refused, failed, timeout, unbacked, reported, bypass.", "gauge")
		for _, kind := range []string{publish.AlertHeld, publish.AlertRefused, publish.AlertFailed, publish.AlertTimeout, publish.AlertUnbacked, publish.AlertReported, publish.AlertBypass} {
			fmt.Fprintf(&b, "ods_keyguard_publish_alerts{kind=\"%s\"} %d\n", kind, counts[kind])
		}
		metric("ods_keyguard_publish_deadline_timestamp_seconds", "When the publish gate's held version of the zone goes out (or, with on_deadline \"hold\", the served version's signatures start to expire), in seconds since the epoch.", "gauge")
		for _, a := range rep.Publish {
			if a.Kind == publish.AlertHeld && a.Deadline != nil {
				fmt.Fprintf(&b, "ods_keyguard_publish_deadline_timestamp_seconds{zone=\"%s\"} %d\n", esc.Replace(a.Zone), a.Deadline.Unix())
			}
		}
	}
	metric("ods_keyguard_last_backup_timestamp_seconds", "When the repository's last confirmed backup ceremony ended, in seconds since the epoch.", "gauge")
	for _, a := range rep.Backups {
		if a.Last != nil {
			fmt.Fprintf(&b, "ods_keyguard_last_backup_timestamp_seconds{repository=\"%s\"} %d\n", esc.Replace(a.Repository), a.Last.Ended.Unix())
		}
	}
	// [backup] as configured, so that alerts on the backup age follow it.
	if o := rep.Options; o.Interval > 0 {
		metric("ods_keyguard_backup_interval_seconds", "[backup] interval: a last confirmed backup older than this is overdue (WARNING).", "gauge")
		fmt.Fprintf(&b, "ods_keyguard_backup_interval_seconds %d\n", int64(o.Interval.Seconds()))
		metric("ods_keyguard_backup_grace_seconds", "[backup] grace: a last confirmed backup older than interval plus this is CRITICAL.", "gauge")
		fmt.Fprintf(&b, "ods_keyguard_backup_grace_seconds %d\n", int64(o.Grace.Seconds()))
	}
	type series struct{ name, help string }
	for _, s := range []series{
		{"ods_keyguard_pool_spare_keys", "Backed-up keys at the pool's head beyond those needed until the next backup."},
		{"ods_keyguard_pool_covered_keys", "Backed-up keys at the head of the pool, in hand-out order."},
		{"ods_keyguard_pool_needed_keys", "Keys the pool's zones take until the next backup is due plus grace."},
		{"ods_keyguard_pool_seconds_left", "Seconds until the pool's backed-up keys run out."},
	} {
		metric(s.name, s.help, "gauge")
		for _, p := range rep.Pools {
			labels := fmt.Sprintf("policy=\"%s\",role=\"%s\",algorithm=\"%d\",bits=\"%d\",repository=\"%s\"",
				esc.Replace(p.Policy), p.Role, p.Algorithm, p.Bits, esc.Replace(p.Repository))
			var v string
			switch s.name {
			case "ods_keyguard_pool_spare_keys":
				v = fmt.Sprint(p.Spare)
			case "ods_keyguard_pool_covered_keys":
				v = fmt.Sprint(p.Covered)
			case "ods_keyguard_pool_needed_keys":
				v = fmt.Sprint(p.Needed)
			default:
				if p.RunsOut.IsZero() {
					continue
				}
				v = fmt.Sprint(int64(math.Max(0, p.RunsOut.Sub(rep.At).Seconds())))
			}
			fmt.Fprintf(&b, "%s{%s} %s\n", s.name, labels, v)
		}
	}
	return b.String()
}
