// Package check is the monitoring plugin behind ods-keyguard check: the
// verdict on both rules of the procedure, and the conventions it speaks
// (Nagios, Icinga, Naemon, Sensu): states and exit codes, threshold ranges, performance data, and
// the Prometheus textfile format.
package check

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// State is a plugin state; its value is the exit code.
type State int

const (
	StateOK       State = 0
	StateWarning  State = 1
	StateCritical State = 2
	StateUnknown  State = 3
)

func (s State) String() string {
	switch s {
	case StateOK:
		return "OK"
	case StateWarning:
		return "WARNING"
	case StateCritical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// MarshalText writes the state as plugins name it: OK, WARNING ...
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Severity orders states for "the worst wins": CRITICAL, then UNKNOWN
// (a known CRITICAL outranks what could not be determined), WARNING, OK.
func (s State) Severity() int {
	switch s {
	case StateCritical:
		return 3
	case StateUnknown:
		return 2
	case StateWarning:
		return 1
	}
	return 0
}

// Worse returns the worse of two states.
func Worse(a, b State) State {
	if b.Severity() > a.Severity() {
		return b
	}
	return a
}

// Range is a threshold range, [@][start:][end]: alert when the value is
// outside start..end, or inside it with @.
type Range struct {
	Text       string
	Start, End float64 // -Inf / +Inf when open
	Inside     bool
}

// ParseRange parses the guidelines' range syntax.
func ParseRange(s string) (Range, error) {
	r := Range{Text: s, Start: 0, End: math.Inf(1)}
	t := s
	if strings.HasPrefix(t, "@") {
		r.Inside = true
		t = t[1:]
	}
	if t == "" {
		return r, fmt.Errorf("range %q: empty", s)
	}
	start, end, hasColon := strings.Cut(t, ":")
	if hasColon && start == "" && end == "" {
		return r, fmt.Errorf("range %q: neither start nor end", s)
	}
	if !hasColon {
		end, start = start, ""
	}
	switch {
	case start == "~":
		r.Start = math.Inf(-1)
	case start != "":
		v, err := number(start)
		if err != nil {
			return r, fmt.Errorf("range %q: start %q is not a number", s, start)
		}
		r.Start = v
	}
	if end != "" {
		v, err := number(end)
		if err != nil {
			return r, fmt.Errorf("range %q: end %q is not a number", s, end)
		}
		r.End = v
	} else if !hasColon {
		return r, fmt.Errorf("range %q: no end", s)
	}
	if r.Start > r.End {
		return r, fmt.Errorf("range %q: start is above end", s)
	}
	return r, nil
}

func number(s string) (float64, error) {
	if strings.ContainsAny(s, "eExX") || s == "" {
		return 0, errors.New("not a plain number")
	}
	return strconv.ParseFloat(s, 64)
}

// Alert reports whether v is outside the range (inside it with @).
func (r Range) Alert(v float64) bool {
	in := v >= r.Start && v <= r.End
	if r.Inside {
		return in
	}
	return !in
}

// Perf is one performance data item.
type Perf struct {
	Label     string
	Value     float64
	UOM       string // "", "s", "%", "B", "c"
	Warn      string // a range as written, or ""
	Crit      string
	Min, Max  *float64
	Precision int // decimals to print
}

// Float returns a pointer, for Min and Max.
func Float(v float64) *float64 { return &v }

// String formats the item: 'label'=value[UOM];[warn];[crit];[min];[max].
func (p Perf) String() string {
	label := strings.NewReplacer("=", "_", "'", "_").Replace(p.Label)
	if strings.ContainsAny(label, " \t") {
		label = "'" + label + "'"
	}
	fields := []string{format(p.Value, p.Precision) + p.UOM, p.Warn, p.Crit, "", ""}
	if p.Min != nil {
		fields[3] = format(*p.Min, p.Precision)
	}
	if p.Max != nil {
		fields[4] = format(*p.Max, p.Precision)
	}
	out := strings.Join(fields, ";")
	return label + "=" + strings.TrimRight(out, ";")
}

// format prints a number with a '.' decimal point and never in scientific
// notation, whatever the locale.
func format(v float64, prec int) string {
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// Perfdata joins items with spaces.
func Perfdata(items []Perf) string {
	parts := make([]string, len(items))
	for i, p := range items {
		parts[i] = p.String()
	}
	return strings.Join(parts, " ")
}
