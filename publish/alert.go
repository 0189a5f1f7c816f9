package publish

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Kinds of alerts: what check says about the gate.
const (
	AlertHeld     = "held"     // a version kept back (rule 1, or a step not safe yet)
	AlertRefused  = "refused"  // a version that fails validation, never published
	AlertFailed   = "failed"   // install, reload or the signer's file failed
	AlertTimeout  = "timeout"  // a run out of its bound
	AlertUnbacked = "unbacked" // the served version was signed by keys not backed up
	AlertReported = "reported" // report mode: enforce mode would have held or refused it
	AlertBypass   = "bypass"   // an operator turned the gate off
)

// Alert is one open problem of the gate, with fields: check renders it
// (Text), --json and Prometheus carry the fields.
type Alert struct {
	Zone     string              `json:"zone"`
	Kind     string              `json:"kind"`
	Critical bool                `json:"critical"`
	Serial   uint32              `json:"serial,omitempty"`
	Since    time.Time           `json:"since"`
	Deadline *time.Time          `json:"deadline,omitempty"`
	Keys     []ledger.PublishKey `json:"keys,omitempty"`
	Findings []Finding           `json:"findings,omitempty"`
	Reason   string              `json:"reason"`
	// OnDeadline is what the gate does at the deadline, for the text.
	OnDeadline string `json:"on_deadline,omitempty"`
}

// unbackedKeys names the keys that are not backed up: "key tag 123
// (locator 0a1b...)".
func unbackedKeys(keys []ledger.PublishKey) string {
	var out []string
	for _, k := range keys {
		if k.BackedUp {
			continue
		}
		s := fmt.Sprintf("key tag %d", k.KeyTag)
		if k.Locator != "" {
			s += " (" + k.Locator + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// Text is the alert in one line, as of now.
func (a Alert) Text(now time.Time) string {
	when := func(t time.Time) string { return t.UTC().Format(human.Minute) }
	switch a.Kind {
	case AlertHeld:
		s := fmt.Sprintf("zone %s serial %d held since %s: %s", a.Zone, a.Serial, when(a.Since), a.Reason)
		switch {
		case a.Deadline == nil:
			s += "; no version is served, so no deadline: the zone stays off the name servers until a ceremony covers its keys"
		case !now.Before(*a.Deadline) && a.OnDeadline == DeadlinePublish:
			s += fmt.Sprintf("; its deadline %s has passed: ods-keyguard publish release publishes it (is its timer running?)", when(*a.Deadline))
		case !now.Before(*a.Deadline):
			s += fmt.Sprintf("; its deadline %s has passed and on_deadline is \"hold\": the served version's signatures expire", when(*a.Deadline))
		case a.OnDeadline == DeadlineHold:
			s += fmt.Sprintf("; deadline %s (on_deadline \"hold\": it stays held, and the served version's signatures expire)", when(*a.Deadline))
		default:
			s += fmt.Sprintf("; published anyway at %s unless a ceremony covers its keys first", when(*a.Deadline))
		}
		return s
	case AlertRefused:
		s := fmt.Sprintf("zone %s serial %d refused at %s, never published: %s", a.Zone, a.Serial, when(a.Since), a.Reason)
		if len(a.Findings) > 0 {
			s += ": " + a.Findings[0].String()
			if len(a.Findings) > 1 {
				s += fmt.Sprintf(" (+%d more)", len(a.Findings)-1)
			}
		}
		return s
	case AlertUnbacked:
		return fmt.Sprintf("zone %s serial %d is served since %s signed by keys without a verified backup (rule 1): %s: %s", a.Zone, a.Serial, when(a.Since), unbackedKeys(a.Keys), a.Reason)
	case AlertReported:
		return fmt.Sprintf("zone %s serial %d (report mode, published at %s): enforce mode would have %s", a.Zone, a.Serial, when(a.Since), a.Reason)
	case AlertBypass:
		return fmt.Sprintf("publish gate bypassed for %s since %s: %s", a.Zone, when(a.Since), a.Reason)
	}
	if a.Serial != 0 {
		return fmt.Sprintf("zone %s serial %d: %s since %s: %s", a.Zone, a.Serial, a.Kind, when(a.Since), a.Reason)
	}
	return fmt.Sprintf("zone %s: %s since %s: %s", a.Zone, a.Kind, when(a.Since), a.Reason)
}

// alerts are the zone's open problems.
func (st *zoneState) alerts(onDeadline string) []Alert {
	var out []Alert
	if v := st.Held; v != nil {
		out = append(out, Alert{Zone: st.Zone, Kind: AlertHeld, Critical: true, Serial: v.Serial, Since: v.Since, Deadline: v.Deadline,
			Keys: v.Keys, Findings: v.Findings, Reason: v.Reason, OnDeadline: onDeadline})
	}
	if v := st.Refused; v != nil {
		out = append(out, Alert{Zone: st.Zone, Kind: AlertRefused, Critical: true, Serial: v.Serial, Since: v.Since, Keys: v.Keys,
			Findings: v.Findings, Reason: v.Reason})
	}
	if f := st.Failure; f != nil {
		out = append(out, Alert{Zone: st.Zone, Kind: f.Kind, Critical: true, Serial: f.Serial, Since: f.Since, Reason: f.Reason})
	}
	if v := st.Unbacked; v != nil {
		out = append(out, Alert{Zone: st.Zone, Kind: AlertUnbacked, Critical: true, Serial: v.Serial, Since: v.Decided, Keys: v.Keys, Reason: v.Reason})
	}
	if v := st.Reported; v != nil {
		out = append(out, Alert{Zone: st.Zone, Kind: AlertReported, Critical: v.Invalid, Serial: v.Serial, Since: v.Decided, Keys: v.Keys,
			Findings: v.Findings, Reason: v.Reason})
	}
	return out
}

// Alerts reads every open problem of the gate on this host: the zones'
// alerts and the bypasses. A state_dir without a gate has none. It makes
// nothing (check runs it as the monitoring user).
func Alerts(stateDir string) ([]Alert, error) {
	s, err := openStore(stateDir, -1, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.close()
	names, err := s.alerts.List(".json")
	if err != nil {
		return nil, err
	}
	var out []Alert
	for _, n := range names {
		var as []Alert
		if err := readJSON(s.alerts, n, alertFormat, &as); err != nil {
			return nil, err
		}
		out = append(out, as...)
	}
	b, err := s.bypasses()
	if err != nil {
		return nil, err
	}
	for _, e := range b.sorted() {
		out = append(out, e.alert())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Zone < out[j].Zone })
	return out, nil
}
