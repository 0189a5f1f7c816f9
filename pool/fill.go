// Package pool plans and asks for the enforcer's pre-generated keys: how
// many each policy's zones take until the backup after next (rule 2's
// arithmetic, from package rules), and the ods-enforcer key generate that
// makes them, for ods-keyguard pool fill.
package pool

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// Need is, per role of a policy, what pool fill found.
type Need struct {
	Role   string    `json:"role"`
	Needed int       `json:"needed"`
	Until  time.Time `json:"until"`
	Unused int       `json:"unused"`
}

func (n Need) String() string {
	return fmt.Sprintf("%s: %d needed until %s, %d unused", n.Role, n.Needed, n.Until.Format(human.Minute), n.Unused)
}

// Plan is what pool fill asks the enforcer for, for one policy: keys
// covering Duration of each of its roles (zero: nothing to do).
type Plan struct {
	Policy   string        `json:"policy"`
	Duration time.Duration `json:"-"`
	Needs    []Need        `json:"needs"`
}

// Input is what pool fill plans from.
type Input struct {
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
func Fill(in Input) ([]Plan, error) {
	var out []Plan
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
		plan := Plan{Policy: p.Name, Needs: []Need{}}
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
			need := rules.Needed(rules.Rolls(p, pk, zones, in.NewZones[p.Name], in.Now), pk.Lifetime, t)
			unused := len(rules.PoolKeys(in.State, p, pk))
			plan.Needs = append(plan.Needs, Need{Role: pk.Role.String(), Needed: need, Until: t, Unused: unused})
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

// Asked is a policy's plan and what pool fill asked the enforcer for.
type Asked struct {
	Plan
	Asked bool `json:"asked"`
	// What key generate got, in seconds; null when nothing was asked.
	Duration *int64 `json:"duration_seconds"`
}

// Ask carries the plans out in order: generate (ods-enforcer key
// generate --policy P --duration D) for each policy that needs keys. What
// it does goes to out as it happens, when out is not nil.
func Ask(plans []Plan, generate func(policy, duration string) error, out io.Writer) ([]Asked, error) {
	if out == nil {
		out = io.Discard
	}
	asked := []Asked{}
	for _, p := range plans {
		var notes []string
		for _, n := range p.Needs {
			notes = append(notes, n.String())
		}
		a := Asked{Plan: p}
		if p.Duration == 0 {
			fmt.Fprintf(out, "policy %s: nothing to do (%s)\n", p.Policy, strings.Join(notes, "; "))
			asked = append(asked, a)
			continue
		}
		secs := int64(math.Ceil(p.Duration.Seconds()))
		duration := fmt.Sprintf("PT%dS", secs)
		if err := generate(p.Policy, duration); err != nil {
			return asked, err
		}
		a.Asked, a.Duration = true, &secs
		asked = append(asked, a)
		fmt.Fprintf(out, "policy %s: asked the enforcer for the keys of the next %s (ods-enforcer key generate --duration %s; %s)\n",
			p.Policy, human.Duration(time.Duration(secs)*time.Second), duration, strings.Join(notes, "; "))
		fmt.Fprintf(out, "policy %s: the new keys are not backed up: run the next ceremony (ods-keyguard backup prepare)\n", p.Policy)
	}
	return asked, nil
}

// Doc is pool fill's JSON document.
func Doc(asked []Asked) any {
	return jsondoc.New("pool-fill", struct {
		Policies []Asked `json:"policies"`
	}{asked})
}
