package publish

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// ZoneStatus is what the gate says of one zone: what is served, what is
// kept back, its open problems.
type ZoneStatus struct {
	Zone   string        `json:"zone"`
	Served *ServedStatus `json:"served"`
	// Held is the version kept back; Refused the newest that failed
	// validation.
	Held    *VersionStatus `json:"held"`
	Refused *VersionStatus `json:"refused"`
	LastRun time.Time      `json:"last_run"`
	Alerts  []Alert        `json:"alerts"`
}

// ServedStatus is the version on the name servers.
type ServedStatus struct {
	Serial   uint32    `json:"serial"`
	Since    time.Time `json:"since"`
	Path     string    `json:"path"`
	Reloaded bool      `json:"reloaded"`
	// Expires is its earliest signature's expiration; Deadline that less
	// the margin: when a held version goes out.
	Expires  time.Time `json:"expires"`
	Deadline time.Time `json:"deadline"`
}

// VersionStatus is a version kept back.
type VersionStatus struct {
	Serial   uint32     `json:"serial"`
	Since    time.Time  `json:"since"`
	Reason   string     `json:"reason"`
	Deadline *time.Time `json:"deadline"`
	Findings []Finding  `json:"findings"`
}

func versionStatus(v *version) *VersionStatus {
	if v == nil {
		return nil
	}
	f := v.Findings
	if f == nil {
		f = []Finding{}
	}
	return &VersionStatus{Serial: v.Serial, Since: v.Since, Reason: v.Reason, Deadline: v.Deadline, Findings: f}
}

// Status reads the gate's state of zone (every zone when ""), without
// locking or making anything.
func Status(stateDir, zone, onDeadline string) ([]ZoneStatus, error) {
	out := []ZoneStatus{}
	s, err := openStore(stateDir, -1, false)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.close()
	b, err := s.bypasses()
	if err != nil {
		return nil, err
	}
	names := []string{statedir.SafeName(zone) + ".json"}
	if zone == "" {
		if names, err = s.zones.List(".json"); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	for _, n := range names {
		st := &zoneState{}
		if err := readJSON(s.zones, n, zoneFormat, st); err != nil {
			return nil, err
		}
		if st.Zone == "" {
			continue // a zone the gate never saw
		}
		zs := ZoneStatus{Zone: st.Zone, Held: versionStatus(st.Held), Refused: versionStatus(st.Refused), LastRun: st.LastRun,
			Alerts: st.alerts(onDeadline)}
		if sv := st.Served; sv != nil {
			zs.Served = &ServedStatus{Serial: sv.Serial, Since: sv.Since, Path: sv.Path, Reloaded: sv.Reloaded,
				Expires: sv.Review.EarliestExpiration, Deadline: sv.Deadline}
		}
		if e := b.active(st.Zone, now); e != nil {
			zs.Alerts = append(zs.Alerts, e.alert())
		}
		if zs.Alerts == nil {
			zs.Alerts = []Alert{}
		}
		out = append(out, zs)
	}
	return out, nil
}

// WriteStatus prints the status: a line per zone, then a line per open
// problem.
func WriteStatus(w io.Writer, zones []ZoneStatus, now time.Time) {
	if len(zones) == 0 {
		fmt.Fprintln(w, "no zone has gone through the gate on this host")
		return
	}
	for _, z := range zones {
		var parts []string
		if s := z.Served; s != nil {
			p := fmt.Sprintf("serial %d served since %s", s.Serial, s.Since.UTC().Format(human.Minute))
			if !s.Reloaded {
				p += " (installed, NOT reloaded)"
			}
			if !s.Deadline.IsZero() {
				p += ", signatures valid until " + s.Expires.UTC().Format(human.Minute)
			}
			parts = append(parts, p)
		} else {
			parts = append(parts, "nothing served by the gate")
		}
		if h := z.Held; h != nil {
			parts = append(parts, fmt.Sprintf("serial %d held", h.Serial))
		}
		if r := z.Refused; r != nil {
			parts = append(parts, fmt.Sprintf("serial %d refused", r.Serial))
		}
		fmt.Fprintf(w, "%s: %s\n", z.Zone, strings.Join(parts, "; "))
		for _, a := range z.Alerts {
			level := "WARNING"
			if a.Critical {
				level = "CRITICAL"
			}
			fmt.Fprintf(w, "  %s %s\n", level, a.Text(now))
		}
	}
}
