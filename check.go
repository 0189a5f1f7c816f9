package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/monitor"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "monitoring plugin (Nagios, Icinga, Naemon, Sensu) for both rules of the backup procedure",
		UsageText: "ods-keyguard check [-w RANGE] [-c RANGE] [-t SECONDS] [--at TIME] [--json] [--prometheus FILE]",
		Description: `Rule 1, CRITICAL: a key in use (a DS, DNSKEY, RRSIG or RRSIGDNSKEY record
rumoured or omnipresent) whose backup is not confirmed: in no confirmed
ceremony, or, with RequireBackup, not Done in the enforcer.
Rule 2: per pool (policy, role, algorithm, bits, repository) the backed-up
keys at the head of the pool, in the order the enforcer hands them out,
against the keys its zones take until the next backup is due plus grace.
Spare = covered - needed, judged by --warning-spare and --critical-spare.
Presence, CRITICAL: an enforcer key missing from its token or a mirror, or
of another type there (public keys are compared by verify, not here: check
skips the public-key objects to stay quick).
Backup age: WARNING past [backup] interval, CRITICAL past interval + grace;
WARNING when no ceremony was ever confirmed, and when a ceremony has been
open for longer than grace (its keys stay Prepared: rollovers stall), and
when the DS hook holds withheld submissions.
UNKNOWN when it cannot tell: module missing, wrong PIN, token absent,
database unreadable, bad arguments, out of time.

Output: "KEYGUARD STATE - summary | perfdata", then one line per problem and
one per pool. Ranges: [@][start:][end], alert outside (inside with @).
--at TIME: RFC 3339, YYYY-MM-DD[THH:MM], or an ISO 8601 duration from now (P3D).

Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "warning-spare", Aliases: []string{"w"}, Value: "1:", Usage: "WARNING when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.StringFlag{Name: "critical-spare", Aliases: []string{"c"}, Value: "0:", Usage: "CRITICAL when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.Float64Flag{Name: "timeout", Aliases: []string{"t"}, Value: 10, Usage: "answer UNKNOWN before `SECONDS` have passed"},
			&cli.StringFlag{Name: "at", Usage: "evaluate as of `TIME` (\"at Friday's backup, is there enough?\")"},
			&cli.BoolFlag{Name: "json", Usage: "print the verdict as a JSON document instead"},
			&cli.StringFlag{Name: "prometheus", Usage: "also write the figures to `FILE` (node_exporter textfile format, atomically)"},
		},
		Action: runCheck,
	}
}

// checkReport is the verdict, in every output format.
type checkReport struct {
	State    monitor.State       `json:"-"`
	Status   string              `json:"status"`
	Exit     int                 `json:"exit"`
	Summary  string              `json:"summary"`
	At       time.Time           `json:"at"`
	Findings []finding           `json:"findings"`
	Unbacked []rules.Unbacked    `json:"unbacked_in_use"`
	Missing  int                 `json:"missing_keys"`
	Withheld int                 `json:"withheld_submissions"`
	Pools    []rules.Pool        `json:"pools"`
	Backups  []rules.Age         `json:"backups"`
	Problems []inventory.Problem `json:"presence_problems"`
	Perf     []monitor.Perf      `json:"-"`
	Perfdata string              `json:"perfdata"`
}

type finding struct {
	State    monitor.State `json:"-"`
	Status   string        `json:"state"`
	Category string        `json:"category"`
	Text     string        `json:"text"`
}

func runCheck(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("check: unexpected argument %q", c.Args().First())
	}
	timeout := time.Duration(c.Float64("timeout") * float64(time.Second))
	if timeout <= 0 {
		return usagef("check: --timeout %v: must be more than zero", c.Float64("timeout"))
	}
	// Answer a little before the scheduler's limit, never after it.
	budget := timeout - timeout/10
	ctx, cancel := context.WithTimeout(c.Context, budget)
	defer cancel()
	done := make(chan *checkReport, 1)
	go func() { done <- evaluate(ctx, c) }()
	var rep *checkReport
	select {
	case rep = <-done:
	case <-ctx.Done():
		rep = unknown(fmt.Sprintf("no answer within %.1fs (-t %g): the tokens or the enforcer database are too slow", budget.Seconds(), timeout.Seconds()))
	}
	rep.Status, rep.Exit = rep.State.String(), int(rep.State)
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else {
		printCheck(c.App.Writer, rep)
	}
	if path := c.String("prometheus"); path != "" {
		if err := ledger.WriteAtomic(path, []byte(prometheus(rep)), 0o644); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "ods-keyguard: --prometheus: %v\n", err)
		}
	}
	return withCode(int(rep.State), nil)
}

func unknown(reason string) *checkReport {
	return &checkReport{State: monitor.Unknown, Summary: oneLine(reason), Findings: []finding{}}
}

func evaluate(ctx context.Context, c *cli.Context) *checkReport {
	warn, err := monitor.ParseRange(c.String("warning-spare"))
	if err != nil {
		return unknown("--warning-spare: " + err.Error())
	}
	crit, err := monitor.ParseRange(c.String("critical-spare"))
	if err != nil {
		return unknown("--critical-spare: " + err.Error())
	}
	now := time.Now().UTC()
	at := now
	if s := c.String("at"); s != "" {
		if at, err = parseAt(s, now); err != nil {
			return unknown("--at: " + err.Error())
		}
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return unknown(err.Error())
	}
	sched, err := cfg.Schedule()
	if err != nil {
		return unknown(err.Error())
	}
	// Presence and type, not public keys: verify compares those. check
	// must answer inside a scheduler's time limit.
	snap, err := takeWith(ctx, cfg, hsmcheck.Request{NoPublic: true})
	if err != nil {
		return unknown(err.Error())
	}
	store, err := snap.ceremonies()
	if err != nil {
		return unknown(err.Error())
	}
	rb := map[string]bool{}
	for _, r := range cfg.ODS.Repositories {
		rb[r.Name] = r.RequireBackup
	}
	res := rules.Evaluate(rules.Input{Now: at, State: snap.state, Store: store, RequireBackup: rb,
		Interval: sched.Interval, Grace: sched.Grace, NewZones: cfg.Check.NewZones})
	inv := inventory.Build(snap.state, snap.results, "")
	rep := &checkReport{At: at, Unbacked: res.Unbacked, Pools: res.Pools, Backups: res.Ages,
		Problems: inv.Problems, Findings: []finding{}}
	add := func(s monitor.State, cat, format string, args ...any) {
		rep.Findings = append(rep.Findings, finding{State: s, Category: cat, Text: fmt.Sprintf(format, args...)})
	}
	for _, u := range res.Unbacked {
		add(monitor.Critical, "rule 1", "zone %s %s %d (key %s) is in use without a confirmed backup: %s", u.Zone, u.Role, u.KeyTag, u.Locator, u.Reason)
	}
	for _, p := range inv.Problems {
		if p.Kind == inventory.Missing {
			rep.Missing++
		}
		add(monitor.Critical, "presence", "%s", p.String())
	}
	for _, r := range snap.results {
		if r.Err != nil {
			add(monitor.Unknown, "token", "cannot read %s", oneLine(r.Err.Error()))
		}
	}
	for _, p := range res.Pools {
		if p.Idle {
			continue
		}
		s := monitor.OK
		switch {
		case crit.Alert(float64(p.Spare)):
			s = monitor.Critical
		case warn.Alert(float64(p.Spare)):
			s = monitor.Warning
		}
		if s == monitor.OK {
			continue
		}
		gap := ""
		if p.Gap {
			gap = "; a key that is not backed up comes before backed-up ones"
		}
		add(s, "rule 2", "pool %s: spare %d: %d backed up at the head of %d unused, %d needed until %s%s",
			p.Name(), p.Spare, p.Covered, p.Unused, p.Needed, p.Until.Format("2006-01-02T15:04Z"), gap)
	}
	for _, a := range res.Ages {
		switch {
		case a.Last == nil:
			add(monitor.Warning, "backup", "no confirmed backup ceremony for repository %s yet", a.Repository)
		case a.Age > sched.Interval+sched.Grace:
			add(monitor.Critical, "backup", "last confirmed backup of %s is %s old, past interval %s + grace %s", a.Repository, human(a.Age), human(sched.Interval), human(sched.Grace))
		case a.Age > sched.Interval:
			add(monitor.Warning, "backup", "last confirmed backup of %s is %s old, past interval %s", a.Repository, human(a.Age), human(sched.Interval))
		}
	}
	// A DS the hook withheld stays withheld until a release: say so.
	pending, err := ledger.LoadPending(cfg.StateDir)
	if err != nil {
		return unknown(err.Error())
	}
	rep.Withheld = len(pending)
	for _, p := range pending {
		what := "input"
		if p.Zone != "" {
			what = fmt.Sprintf("zone %s key tag %d", p.Zone, p.KeyTag)
		}
		add(monitor.Warning, "hook", "%s for %s withheld since %s: %s (ods-keyguard hook pending; hook release sends what is covered)",
			p.Kind, what, p.Received.Format("2006-01-02T15:04Z"), p.Reason)
	}
	// A ceremony left open keeps its keys Prepared: the enforcer will not
	// make them omnipresent, so rollovers stall until done or rollback.
	for _, repo := range store.OpenRepositories() {
		if c := store.Open(repo); at.Sub(c.Prepared) > sched.Grace {
			add(monitor.Warning, "ceremony", "backup ceremony %s of %s open for %s: finish it with backup done, or backup rollback; until then its keys stay Prepared",
				c.ID, repo, human(at.Sub(c.Prepared)))
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return rep.Findings[i].State.Severity() > rep.Findings[j].State.Severity()
	})
	for i := range rep.Findings {
		rep.State = monitor.Worse(rep.State, rep.Findings[i].State)
		rep.Findings[i].Status = rep.Findings[i].State.String()
	}
	rep.Summary = summarize(rep, len(snap.state.Keys))
	rep.Perf = perfdata(rep, warn, crit, sched)
	return rep
}

// summarize names the worst problems first, a clause per category.
func summarize(rep *checkReport, keys int) string {
	if len(rep.Findings) == 0 {
		last := "never"
		for _, a := range rep.Backups {
			if a.Last != nil {
				last = human(a.Age) + " ago"
			}
		}
		return fmt.Sprintf("%d keys, %d pools: every key in use is backed up, every pool covers the next backup; last backup %s", keys, len(rep.Pools), last)
	}
	var clauses []string
	seen := map[string]bool{}
	for _, f := range rep.Findings {
		if seen[f.Category] {
			continue
		}
		seen[f.Category] = true
		var n int
		var first []string
		for _, g := range rep.Findings {
			if g.Category == f.Category {
				n++
				if len(first) < 2 {
					first = append(first, g.Text)
				}
			}
		}
		switch f.Category {
		case "rule 1":
			var names []string
			for i, u := range rep.Unbacked {
				if i == 3 {
					names = append(names, "...")
					break
				}
				names = append(names, fmt.Sprintf("%s %s %d", u.Zone, u.Role, u.KeyTag))
			}
			clauses = append(clauses, fmt.Sprintf("%d keys in use without a confirmed backup (%s)", len(rep.Unbacked), strings.Join(names, ", ")))
		case "presence":
			clauses = append(clauses, fmt.Sprintf("%d problems on the tokens: %s", n, first[0]))
		default:
			clauses = append(clauses, strings.Join(first, "; ")+moreOf(n-len(first)))
		}
	}
	return strings.Join(clauses, "; ")
}

func moreOf(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" (+%d more)", n)
}

func perfdata(rep *checkReport, warn, crit monitor.Range, sched config.Schedule) []monitor.Perf {
	zero := monitor.Float(0)
	perf := []monitor.Perf{
		{Label: "unbacked_in_use", Value: float64(len(rep.Unbacked)), Crit: "0", Min: zero},
		{Label: "missing_keys", Value: float64(rep.Missing), Crit: "0", Min: zero},
		{Label: "withheld_submissions", Value: float64(rep.Withheld), Warn: "0", Min: zero},
	}
	for _, a := range rep.Backups {
		if a.Last == nil {
			continue
		}
		perf = append(perf, monitor.Perf{Label: "backup_age " + a.Repository, Value: math.Max(0, a.Age.Seconds()), UOM: "s",
			Warn: fmt.Sprint(int64(sched.Interval.Seconds())), Crit: fmt.Sprint(int64((sched.Interval + sched.Grace).Seconds())), Min: zero})
	}
	for _, p := range rep.Pools {
		perf = append(perf,
			monitor.Perf{Label: p.Name() + " spare", Value: float64(p.Spare), Warn: warn.Text, Crit: crit.Text},
			monitor.Perf{Label: p.Name() + " covered", Value: float64(p.Covered), Min: zero})
		if !p.RunsOut.IsZero() {
			perf = append(perf, monitor.Perf{Label: p.Name() + " hours_left", Value: math.Max(0, p.RunsOut.Sub(rep.At).Hours()), Precision: 1, Min: zero})
		}
	}
	rep.Perfdata = monitor.Perfdata(perf)
	return perf
}

func printCheck(w io.Writer, rep *checkReport) {
	line := fmt.Sprintf("KEYGUARD %s - %s", rep.State, rep.Summary)
	if rep.Perfdata != "" {
		line += " | " + rep.Perfdata
	}
	fmt.Fprintln(w, line)
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "%s: %s: %s\n", f.State, f.Category, f.Text)
	}
	for _, p := range rep.Pools {
		runs := "beyond ten years"
		if !p.RunsOut.IsZero() {
			runs = p.RunsOut.Format("2006-01-02T15:04Z")
		}
		extra := ""
		switch {
		case p.Idle:
			extra = ", no zone uses it"
		case p.Manual:
			extra = ", manual rollover"
		}
		fmt.Fprintf(w, "pool %s: %d unused, %d backed up at the head, %d needed until %s, spare %d, backed-up keys last until %s%s\n",
			p.Name(), p.Unused, p.Covered, p.Needed, p.Until.Format("2006-01-02T15:04Z"), p.Spare, runs, extra)
	}
}

// parseAt reads --at: RFC 3339, a date, a date and time, or a duration from now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "P") {
		d, err := config.ParseISODuration(s)
		return now.Add(d), err
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, YYYY-MM-DD[THH:MM] or a duration such as P3D", s)
}

// human prints a duration in days and hours.
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	switch {
	case days > 0 && hours > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case days > 0:
		return fmt.Sprintf("%dd", days)
	case hours > 0:
		return fmt.Sprintf("%dh", hours)
	}
	return fmt.Sprintf("%dm", int(d/time.Minute))
}

// prometheus renders the figures in the node_exporter textfile format.
func prometheus(rep *checkReport) string {
	var b strings.Builder
	metric := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	metric("ods_keyguard_state", "Verdict of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_state %d\n", rep.State)
	metric("ods_keyguard_unbacked_in_use", "Key uses (zone, role) in use without a confirmed backup.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_unbacked_in_use %d\n", len(rep.Unbacked))
	metric("ods_keyguard_missing_keys", "Enforcer keys missing from a token or mirror.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_missing_keys %d\n", rep.Missing)
	metric("ods_keyguard_withheld_submissions", "DS submissions the hook withheld and has not released.", "gauge")
	fmt.Fprintf(&b, "ods_keyguard_withheld_submissions %d\n", rep.Withheld)
	metric("ods_keyguard_last_backup_age_seconds", "Seconds since the repository's last confirmed backup ceremony.", "gauge")
	for _, a := range rep.Backups {
		if a.Last != nil {
			fmt.Fprintf(&b, "ods_keyguard_last_backup_age_seconds{repository=\"%s\"} %d\n", esc.Replace(a.Repository), int64(a.Age.Seconds()))
		}
	}
	type series struct{ name, help string }
	for _, s := range []series{
		{"ods_keyguard_pool_spare_keys", "Backed-up keys at the pool's head beyond those needed until the next backup."},
		{"ods_keyguard_pool_covered_keys", "Backed-up keys at the head of the pool, in hand-out order."},
		{"ods_keyguard_pool_needed_keys", "Keys the pool's zones take until the next backup is due plus grace."},
		{"ods_keyguard_pool_hours_left", "Hours until the pool's backed-up keys run out."},
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
				v = fmt.Sprintf("%.1f", math.Max(0, p.RunsOut.Sub(rep.At).Hours()))
			}
			fmt.Fprintf(&b, "%s{%s} %s\n", s.name, labels, v)
		}
	}
	return b.String()
}
