package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// ReleaseReport is what a release did, zone by zone.
type ReleaseReport struct {
	Results []*Result `json:"results"`
	// Left counts the versions still held or waiting after it.
	Left int `json:"left"`
	// Errors are the zones that could not be looked at.
	Errors []string `json:"errors"`
}

// Release decides again what the gate keeps back, for zone (every zone
// when ""): a held version whose keys a ceremony covers now, or whose step
// is safe now, is published; one whose deadline has come is published
// (on_deadline = "publish"); versions a run left waiting are decided; a
// reload that failed is tried again; a served version published without a
// backup is checked against the ceremonies. backup done runs it after a
// ceremony; a timer runs it every few minutes for the deadlines.
func (g *Gate) Release(ctx context.Context, zone string) (*ReleaseReport, error) {
	rep := &ReleaseReport{Results: []*Result{}, Errors: []string{}}
	s, err := openStore(g.StateDir, g.StateGroup, true)
	if err != nil {
		return nil, err
	}
	defer s.close()
	names, err := g.waiting(s)
	if err != nil {
		return nil, err
	}
	if zone != "" {
		want := statedir.SafeName(zone)
		names = map[string]string{}
		if z, err := s.load(strings.TrimSuffix(zone, ".")); err == nil {
			names[want] = z.Zone
		}
	}
	var keys []string
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, safe := range keys {
		if ctx.Err() != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("zone %s: not looked at: out of time", names[safe]))
			continue
		}
		res, left, err := g.releaseZone(ctx, s, names[safe])
		if err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("zone %s: %v", names[safe], err))
			continue
		}
		rep.Results = append(rep.Results, res...)
		rep.Left += left
	}
	return rep, nil
}

// waiting names the zones that may need a release: those with an alert,
// and those with kept versions (SafeName -> the zone's name).
func (g *Gate) waiting(s *store) (map[string]string, error) {
	out := map[string]string{}
	alerts, err := s.alerts.List(".json")
	if err != nil {
		return nil, err
	}
	for _, n := range alerts {
		out[strings.TrimSuffix(n, ".json")] = ""
	}
	dirs, err := s.versions.List("")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		out[d] = ""
	}
	for safe := range out {
		var st zoneState
		if err := readJSON(s.zones, safe+".json", zoneFormat, &st); err == nil && st.Zone != "" {
			out[safe] = st.Zone
		} else {
			out[safe] = unsafeName(safe)
		}
	}
	return out, nil
}

// unsafeName is the zone name statedir.SafeName made name of.
func unsafeName(name string) string {
	if name == "@" {
		return "."
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+2 < len(name) {
			if c, err := strconv.ParseUint(name[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}

// releaseZone decides what the zone keeps back, under its lock.
func (g *Gate) releaseZone(ctx context.Context, s *store, zone string) ([]*Result, int, error) {
	vdir, err := s.versions.Sub(statedir.SafeName(zone), true)
	if err != nil {
		return nil, 0, err
	}
	defer vdir.Close()
	unlock, err := s.locks.Flock(ctx, statedir.SafeName(zone)+".lock", share(ctx, 0.3))
	var busy *statedir.BusyError
	if errors.As(err, &busy) {
		return []*Result{{Zone: zone, Action: Queued, Reason: "another run of the gate holds the zone"}}, 1, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	z, err := g.zone(ctx, s, vdir, zone)
	if err != nil {
		return nil, 0, err
	}
	var out []*Result
	for _, r := range z.process(ctx) {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	left := 0
	if z.st.Held != nil {
		left++
	}
	if names, err := vdir.List(""); err == nil {
		for _, n := range names {
			if strings.HasPrefix(n, "pending-") {
				left++
			}
		}
		if len(names) == 0 {
			s.versions.RemoveEmpty(statedir.SafeName(zone))
		}
	}
	return out, left, nil
}

// dryRun decides the version in file as a run would, and changes nothing:
// no state, no record, no install.
func (g *Gate) dryRun(ctx context.Context, zone string, file *os.File) (*Result, error) {
	st := &zoneState{Zone: zone}
	s, err := openStore(g.StateDir, -1, false)
	if err == nil {
		defer s.close()
		if st, err = s.load(zone); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	z := &zoneRun{g: g, zone: zone, st: st, site: g.Config.For(zone), start: g.now()}
	if s != nil {
		b, err := s.bypasses()
		if err != nil {
			return nil, err
		}
		z.by = b.active(zone, z.start)
	}
	z.f = g.facts(ctx, zone, st)
	z.adopt(ctx)
	v, err := g.decide(ctx, z.f, file, st)
	if err != nil {
		return nil, err
	}
	res := &Result{Zone: zone, Serial: v.rep.Serial, Keys: v.keys, Findings: append(append([]Finding(nil), v.findings...), v.stepFindings...), Reason: v.reason}
	dl := deadlineOf(st)
	switch {
	case v.same:
		res.Action = Served
	case v.stale:
		res.Action = ledger.PublishStale
	case z.by != nil:
		res.Action, res.Reason = ledger.PublishPublished, fmt.Sprintf("gate bypassed by %s: %s", z.by.By, z.by.Reason)
	case z.site.Mode == Report && !v.passes():
		res.Action, res.Reason = ledger.PublishReported, wouldHave(v)
	case v.passes():
		res.Action, res.Reason = ledger.PublishPublished, "passes: validates, every signing key backed up, a safe step"
	case v.invalid:
		res.Action = ledger.PublishRefused
	case dl != nil && !g.now().Before(*dl) && g.Config.OnDeadline == DeadlinePublish:
		res.Action = ledger.PublishDeadline
	default:
		res.Action = ledger.PublishHeld
	}
	return res, nil
}
