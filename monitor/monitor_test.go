package monitor

import (
	"math"
	"regexp"
	"testing"
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
