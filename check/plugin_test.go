package check

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// Every row of the guidelines' table, plus edges.
func TestRanges(t *testing.T) {
	tests := []struct {
		rng    string
		alert  []float64
		silent []float64
	}{
		{"10", []float64{-1, 11, 10.5}, []float64{0, 5, 10}},                 // < 0 or > 10
		{"10:", []float64{9.99, -5}, []float64{10, 1e6}},                     // < 10
		{"~:10", []float64{11}, []float64{-1e6, 10}},                         // > 10
		{"10:20", []float64{9, 21}, []float64{10, 15, 20}},                   // outside 10..20
		{"@10:20", []float64{10, 15, 20}, []float64{9, 21}},                  // inside 10..20
		{"1:", []float64{0, -1}, []float64{1, 2}},                            // spare keys: warn below 1
		{"0:", []float64{-1}, []float64{0, 3}},                               // spare keys: critical below 0
		{"0", []float64{1, -1}, []float64{0}},                                // anything but zero
		{"-5:-1", []float64{0, -6}, []float64{-5, -3, -1}},                   // negative bounds
		{"~:", []float64{}, []float64{-1e9, 0, 1e9}},                         // never
		{"@~:0", []float64{-3, 0}, []float64{0.5}},                           // alert at or below zero
		{"2.5:7.5", []float64{2.4, 7.6}, []float64{2.5, 5, 7.5}},             // decimals
		{"@0:0", []float64{0}, []float64{1, -1}},                             // exactly zero
		{"5:5", []float64{4, 6}, []float64{5}},                               // exactly five
		{"0:" + "100", []float64{101, -0.1}, []float64{0, 100}},              // both given
		{"@1:", []float64{1, 100}, []float64{0.9}},                           // inside open end
		{"~:-1", []float64{0}, []float64{-1, -100}},                          // only negative ok
		{"10:" + "10", []float64{9, 11}, []float64{10}},                      // degenerate
		{"@" + "10", []float64{0, 10, 5}, []float64{-1, 11}},                 // inside 0..10
		{"0:" + "0", []float64{1}, []float64{0}},                             // zero only
		{"1:" + "1000000", []float64{0}, []float64{1, math.Floor(999999.9)}}, // large
	}
	for _, tt := range tests {
		r, err := ParseRange(tt.rng)
		if err != nil {
			t.Errorf("%q: %v", tt.rng, err)
			continue
		}
		for _, v := range tt.alert {
			if !r.Alert(v) {
				t.Errorf("%q: %v should alert", tt.rng, v)
			}
		}
		for _, v := range tt.silent {
			if r.Alert(v) {
				t.Errorf("%q: %v should not alert", tt.rng, v)
			}
		}
	}
	for _, bad := range []string{"", "@", "abc", "1e3", "10:5", ":", "1:x", "0x10"} {
		if _, err := ParseRange(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// The guidelines' perfdata grammar, strictly.
var perfRE = regexp.MustCompile(`^('[^'=]+'|[^' =]+)=-?[0-9]+(\.[0-9]+)?(s|%|B|c)?(;[@~0-9.:-]*){0,4}$`)

func TestPerfdata(t *testing.T) {
	items := []Perf{
		{Label: "spare keys test/ZSK", Value: -1, Warn: "1:", Crit: "0:"},
		{Label: "backup_age", Value: 86400, UOM: "s", Warn: "604800", Crit: "691200", Min: Float(0)},
		{Label: "a=b'c", Value: 0.5, Precision: 2, Min: Float(0), Max: Float(1)},
		{Label: "big", Value: 1e21, Min: Float(0)},
	}
	for _, p := range items {
		s := p.String()
		if !perfRE.MatchString(s) {
			t.Errorf("%q does not follow the grammar", s)
		}
	}
	if got := items[0].String(); got != "'spare keys test/ZSK'=-1;1:;0:" {
		t.Errorf("got %q", got)
	}
	if got := items[2].String(); got != "a_b_c=0.50;;;0.00;1.00" {
		t.Errorf("got %q", got)
	}
}

func TestWorse(t *testing.T) {
	if Worse(StateOK, StateWarning) != StateWarning || Worse(StateCritical, StateUnknown) != StateCritical || Worse(StateWarning, StateUnknown) != StateUnknown {
		t.Error("order")
	}
}

// The plugin output stays within what Nagios keeps, however many findings:
// the first line and the perfdata always, the worst findings first, a count
// of the rest per state and category.
func TestTextBounded(t *testing.T) {
	keys, missing, withheld := 10000, 0, 5000
	rep := &Report{State: StateCritical, Summary: "1 key in use without a confirmed backup", Measured: true,
		Keys: &keys, Missing: &missing, Withheld: &withheld,
		At: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	rep.Findings = append(rep.Findings, Finding{State: StateCritical, Category: "rule 1", Text: "zone a.example KSK 1 is in use without a confirmed backup"})
	for i := 0; i < 5000; i++ {
		rep.Findings = append(rep.Findings, Finding{State: StateWarning, Category: "hook",
			Text: fmt.Sprintf("ds-submit for zone z%d.example key tag %d withheld since 2026-12-03T10:00Z: key %032x is in no confirmed backup ceremony", i, i, i)})
	}
	for i := 0; i < 300; i++ {
		rep.Pools = append(rep.Pools, rules.Pool{Policy: fmt.Sprintf("policy-%03d", i), Role: "KSK", Algorithm: 13, Bits: 256, Repository: "SoftHSM",
			Unused: 3, Covered: 3, Needed: 1, Spare: 2, Until: rep.At.Add(24 * time.Hour)})
	}
	var b strings.Builder
	rep.Text(&b)
	out := b.String()
	if len(out) > textBudget {
		t.Errorf("plugin output %d bytes, want at most %d", len(out), textBudget)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "KEYGUARD CRITICAL - ") || !strings.Contains(lines[0], " | unbacked_in_use=0;;0;0 ") {
		t.Errorf("first line %q: want the verdict and the core perfdata", lines[0])
	}
	if !strings.HasPrefix(lines[len(lines)-1], "| 'policy-000/KSK/13/256/SoftHSM spare'=2 ") {
		t.Errorf("last line %q: want the rest of the perfdata", lines[len(lines)-1])
	}
	if lines[1] != "CRITICAL: rule 1: zone a.example KSK 1 is in use without a confirmed backup" {
		t.Errorf("second line %q: want the critical finding first", lines[1])
	}
	if !regexp.MustCompile(`(?m)^WARNING: hook: [0-9]+ more findings not shown \(check --json lists them all\)$`).MatchString(out) {
		t.Errorf("no count of the hook findings not shown:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^[0-9]+ more pools not shown \(check --json lists them all\)$`).MatchString(out) {
		t.Errorf("no count of the pools not shown:\n%s", out)
	}
}

// The OK line says what holds: every key in use backed up (pool keys made
// since the last ceremony may not be), and, with several repositories, the
// oldest of their last backups, the one due first.
func TestSummaryOK(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	keys := 15
	rep := &Report{Keys: &keys, Pools: []rules.Pool{{}, {}}, Backups: []rules.Age{
		{Repository: "A", Last: &ledger.Ceremony{ID: "a"}, Age: 6 * 24 * time.Hour},
		{Repository: "B", Last: &ledger.Ceremony{ID: "b"}, Age: 3 * time.Minute},
	}, At: now}
	if got, want := summarize(rep), "15 keys, 2 pools: every key in use backed up, enough until the next backup, oldest last backup 6d ago (A)"; got != want {
		t.Errorf("two repositories:\n got %q\nwant %q", got, want)
	}
	rep.Backups = rep.Backups[1:]
	if got, want := summarize(rep), "15 keys, 2 pools: every key in use backed up, enough until the next backup, last backup 3m ago"; got != want {
		t.Errorf("one repository:\n got %q\nwant %q", got, want)
	}
}
