package rules

import (
	"fmt"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/when"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// FillNeed is, per role of a policy, what pool fill found.
type FillNeed struct {
	Role   string    `json:"role"`
	Needed int       `json:"needed"`
	Until  time.Time `json:"until"`
	Unused int       `json:"unused"`
}

func (n FillNeed) String() string {
	return fmt.Sprintf("%s: %d needed until %s, %d unused", n.Role, n.Needed, n.Until.Format(when.Minute), n.Unused)
}

// FillPlan is what pool fill asks the enforcer for, for one policy: keys
// covering Duration of each of its roles (zero: nothing to do).
type FillPlan struct {
	Policy   string        `json:"policy"`
	Duration time.Duration `json:"-"`
	Needs    []FillNeed    `json:"needs"`
}

// FillInput is what pool fill plans from.
type FillInput struct {
	Now, Until      time.Time // Until zero: the backup after next, plus grace
	State           *enforcer.State
	Store           *ledger.Store
	Interval, Grace time.Duration
	NewZones        map[string]int
	Policy          string // "" for every policy
}

// Fill plans, with rule 2's own arithmetic, the keys each policy's zones
// take until the backup after next is due plus grace (keys made now are
// backed up at the next ceremony and must last until the one after it), and
// how long a `key generate --duration` makes enough of them.
func Fill(in FillInput) ([]FillPlan, error) {
	var out []FillPlan
	found := in.Policy == ""
	for _, p := range in.State.Policies {
		if in.Policy != "" && p.Name != in.Policy {
			continue
		}
		found = true
		var zones []*enforcer.Zone
		for _, z := range in.State.Zones {
			if z.Policy == p {
				zones = append(zones, z)
			}
		}
		plan := FillPlan{Policy: p.Name, Needs: []FillNeed{}}
		for _, pk := range p.Keys {
			if pk.ManualRollover || pk.Lifetime <= 0 {
				continue
			}
			t := in.Until
			if t.IsZero() {
				due := in.Now
				if last := in.Store.LastConfirmed(pk.Repository); last != nil && last.Ended.Add(in.Interval).After(in.Now) {
					due = last.Ended.Add(in.Interval)
				}
				t = due.Add(in.Interval + in.Grace)
			}
			need := Needed(Rolls(p, pk, zones, in.NewZones[p.Name], in.Now), pk.Lifetime, t)
			unused := len(PoolKeys(in.State, p, pk))
			plan.Needs = append(plan.Needs, FillNeed{Role: pk.Role.String(), Needed: need, Until: t, Unused: unused})
			if need > unused {
				plan.Duration = max(plan.Duration, time.Duration(need)*pk.Lifetime)
			}
		}
		out = append(out, plan)
	}
	if !found {
		return nil, fmt.Errorf("policy %q: not in the enforcer's database", in.Policy)
	}
	return out, nil
}
