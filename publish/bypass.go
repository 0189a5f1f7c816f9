package publish

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// A bypass turns the gate off for a zone, or for every zone ("*"): each
// version is published as OpenDNSSEC alone would, recorded, and check is
// CRITICAL while it lasts. For an emergency: a review that is wrong, a
// ceremony that cannot happen in time.

// AllZones names every zone in a bypass.
const AllZones = "*"

type bypass struct {
	Zone   string    `json:"zone"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

type bypasses map[string]bypass

func (e bypass) alert() Alert {
	what := "zone " + e.Zone
	if e.Zone == AllZones {
		what = "every zone"
	}
	return Alert{Zone: e.Zone, Kind: AlertBypass, Critical: true, Since: e.Since,
		Reason: fmt.Sprintf("%s is published unreviewed until %s, by %s: %s (ods-keyguard publish bypass --end)", what, e.Until.UTC().Format(human.Minute), e.By, e.Reason)}
}

func (b bypasses) sorted() []bypass {
	var out []bypass
	for _, e := range b {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Zone < out[j].Zone })
	return out
}

// active is the bypass that applies to zone now, or nil.
func (b bypasses) active(zone string, now time.Time) *bypass {
	for _, z := range []string{ZoneName(zone), AllZones} {
		if e, ok := b[z]; ok && now.Before(e.Until) {
			return &e
		}
	}
	return nil
}

func (s *store) bypasses() (bypasses, error) {
	b := bypasses{}
	if err := readJSON(s.root, bypassFile, bypassFormat, &b); err != nil {
		return nil, err
	}
	return b, nil
}

// Bypass turns the gate off for zone (AllZones: every zone) until until,
// recorded with who and why; end turns it on again. What is held for the
// zone is published by the next release (Bypass runs one).
func (g *Gate) Bypass(ctx context.Context, zone, reason, by string, until time.Time, end bool) error {
	s, err := openStore(g.StateDir, g.StateGroup, true)
	if err != nil {
		return err
	}
	defer s.close()
	name := AllZones
	if zone != AllZones {
		name = ZoneName(zone)
	}
	unlock, err := s.root.Flock(ctx, "bypass.lock", 10*time.Second)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := s.bypasses()
	if err != nil {
		return err
	}
	now := g.now()
	rec := ledger.PublishRecord{Zone: name, Action: ledger.PublishBypass, Reason: reason, By: by}
	if end {
		if _, ok := b[name]; !ok {
			return fmt.Errorf("publish bypass: %s has no bypass to end", name)
		}
		delete(b, name)
		rec.Action = ledger.PublishBypassEnd
	} else {
		if !until.After(now) {
			return errors.New("publish bypass: --until must be later than now")
		}
		b[name] = bypass{Zone: name, By: by, Reason: reason, Since: now, Until: until}
		d := until.UTC()
		rec.Deadline = &d
	}
	// Recorded before it takes effect.
	if err := g.Ledger.AddPublish(ctx, rec); err != nil {
		return err
	}
	if err := writeJSON(s.root, bypassFile, bypassFormat, b); err != nil {
		return err
	}
	if end {
		g.Log.Warning(fmt.Sprintf("publish: bypass of %s ended by %s: %s", name, by, reason))
	} else {
		g.Log.Warning(fmt.Sprintf("publish: gate bypassed for %s until %s by %s: %s", name, until.UTC().Format(time.RFC3339), by, reason))
	}
	return nil
}
