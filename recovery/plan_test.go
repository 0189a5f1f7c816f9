package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// The kasp.xml OpenDNSSEC ships: its "default" policy, read as the plan
// reads it.
func shippedTiming(t *testing.T) Timing {
	const path = "/usr/share/opendnssec/kasp.xml"
	if _, err := os.Stat(path); err != nil {
		sandbox.Missing(t, "needs OpenDNSSEC's kasp.xml: %v", err)
	}
	kasp, err := ReadKasp(path)
	if err != nil {
		t.Fatal(err)
	}
	tm, ok := kasp["default"]
	if !ok {
		t.Fatalf("no default policy in %v", kasp)
	}
	return tm
}

func TestReadKaspShipped(t *testing.T) {
	tm := shippedTiming(t)
	want := map[string]int64{"TTLkey": 3600, "Dprp": 43200, "TTLsig": 86400, "Dsgn": 7200, "DprpP": 9999, "TTLds": 3600, "Dreg": 0}
	for k, v := range want {
		if got := tm.Seconds()[k]; got != v {
			t.Errorf("%s: %d, want %d", k, got, v)
		}
	}
	if len(tm.Assumed) != 1 || !strings.Contains(tm.Assumed[0], "Parent/RegistrationDelay") {
		t.Errorf("assumed %q", tm.Assumed)
	}
}

// planWorld: zone example.com of policy "default", with the given roles in
// use, a DS at the parent, none in a ceremony; lost lists the roles whose
// keys no HSM holds; the signatures expire at exp.
func planWorld(t *testing.T, now, exp time.Time, ds bool, roles []enforcer.Role, lost ...enforcer.Role) PlanInput {
	p := &enforcer.Policy{Name: "default"}
	z := &enforcer.Zone{Name: "example.com", Policy: p}
	st := &enforcer.State{Zones: []*enforcer.Zone{z}, Policies: []*enforcer.Policy{p}}
	held := holding{}
	for i, r := range roles {
		k := &enforcer.Key{ID: int64(i + 1), Locator: "k" + r.String(), Repository: "R", Role: r, State: enforcer.Private, Policy: p}
		dsState := enforcer.DSUnsubmitted
		if ds && r != enforcer.ZSK {
			dsState = enforcer.DSSeen
		}
		u := &enforcer.Use{Key: k, Zone: z, Role: r, DSAtParent: dsState,
			States: map[enforcer.RecordType]enforcer.RecordState{enforcer.RecordDNSKEY: enforcer.Omnipresent}}
		k.Uses, z.Keys, st.Keys = []*enforcer.Use{u}, append(z.Keys, u), append(st.Keys, k)
		held[k.Locator] = "f"
		for _, l := range lost {
			if l == r {
				delete(held, k.Locator)
			}
		}
	}
	store, err := ledgertest.New(t).Ceremonies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return PlanInput{Input: Input{Now: now, State: st, Store: store, Tokens: []Token{{Name: "a", Kind: "repository", Repository: "R", Keys: held}},
		ReadZone: func(*enforcer.Zone) (Signatures, error) { return Signatures{Count: 1, Earliest: exp}, nil }},
		Kasp: map[string]Timing{"default": shippedTiming(t)}, Margin: 24 * time.Hour}
}

// Every path's dates, computed here from the draft's formulas and the
// shipped policy, must be the plan's.
func TestPlanFormulas(t *testing.T) {
	tm := shippedTiming(t)
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	far := now.Add(30 * 24 * time.Hour)
	kz := []enforcer.Role{enforcer.KSK, enforcer.ZSK}
	type want struct {
		name string
		at   time.Time
	}
	ksTrdy := now.Add(tm.Dreg + tm.DprpP + tm.TTLds)
	zTrdy := now.Add(tm.Dprp + tm.TTLkey)
	bothZ := ksTrdy.Add(tm.Dprp + tm.TTLkey)
	for _, tt := range []struct {
		name  string
		roles []enforcer.Role
		lost  []enforcer.Role
		path  string
		steps []want
	}{
		{"ZSK", kz, []enforcer.Role{enforcer.ZSK}, PathZSK, []want{
			{"Tpub", now}, {"Trdy", zTrdy}, {"Tdea", zTrdy.Add(tm.Dsgn + tm.Dprp + tm.TTLsig)}}},
		{"KSK", kz, []enforcer.Role{enforcer.KSK}, PathDoubleDS, []want{
			{"Tsbm", now}, {"Trdy", ksTrdy}, {"Tdea", ksTrdy.Add(tm.Dprp + tm.TTLkey)}}},
		{"CSK", []enforcer.Role{enforcer.CSK}, []enforcer.Role{enforcer.CSK}, PathCSK, []want{
			{"Tsbm", now}, {"Trdy", ksTrdy}, {"Tdea", ksTrdy.Add(tm.Dsgn + tm.Dprp + max(tm.TTLkey, tm.TTLsig))}}},
		{"both", kz, kz, PathBoth, []want{
			{"Tsbm", now}, {"Trdy", ksTrdy}, {"TrdyZ", bothZ}, {"Tdea", bothZ.Add(tm.Dsgn + tm.Dprp + tm.TTLsig)}}},
	} {
		kp := Plan(planWorld(t, now, far, true, tt.roles, tt.lost...))
		if len(kp.Zones) != 1 || kp.Exit != 1 {
			t.Fatalf("%s: %+v", tt.name, kp)
		}
		zp := kp.Zones[0]
		if zp.Path != tt.path || !zp.Feasible || len(zp.Steps) != len(tt.steps) {
			t.Fatalf("%s: path %q feasible %v steps %+v", tt.name, zp.Path, zp.Feasible, zp.Steps)
		}
		for i, w := range tt.steps {
			s := zp.Steps[i]
			if s.Name != w.name || !s.At.Equal(w.at) || s.Offset != int64(w.at.Sub(now)/time.Second) {
				t.Errorf("%s step %d: %s %v (%+d s), want %s %v", tt.name, i, s.Name, s.At, s.Offset, w.name, w.at)
			}
		}
		tdea := tt.steps[len(tt.steps)-1].at
		// Signatures that last exactly until Tdea + margin suffice; a
		// second less, and the DS must go by Texp - (Dreg + DprpP + TTLds).
		exact := tdea.Add(24 * time.Hour)
		if zp := Plan(planWorld(t, now, exact, true, tt.roles, tt.lost...)).Zones[0]; !zp.Feasible || !zp.Needed.Equal(exact) {
			t.Errorf("%s: signatures until Tdea+margin: %+v", tt.name, zp)
		}
		short := exact.Add(-time.Second)
		kp = Plan(planWorld(t, now, short, true, tt.roles, tt.lost...))
		zp = kp.Zones[0]
		trem := short.Add(-(tm.Dreg + tm.DprpP + tm.TTLds))
		if zp.Feasible || zp.Path != PathRemoveDS || kp.Exit != 2 || zp.Steps[0].Name != "Trem" || !zp.Steps[0].At.Equal(trem) || !zp.Steps[1].At.Equal(short) {
			t.Errorf("%s: a second short: exit %d %+v", tt.name, kp.Exit, zp)
		}
		// No DS at the parent: new keys at once.
		if zp := Plan(planWorld(t, now, short, false, tt.roles, tt.lost...)).Zones[0]; zp.Path != PathNewKeys || !zp.Feasible {
			t.Errorf("%s: no DS: %+v", tt.name, zp)
		}
	}
	// Nothing lost: nothing to plan, exit 0.
	if kp := Plan(planWorld(t, now, far, true, kz)); len(kp.Zones) != 0 || kp.Exit != 0 {
		t.Errorf("nothing lost: %+v", kp)
	}
	// A policy kasp.xml does not know: no dates, exit 3.
	in := planWorld(t, now, far, true, kz, enforcer.ZSK)
	in.Kasp = map[string]Timing{}
	if kp := Plan(in); kp.Exit != 3 || len(kp.Zones[0].Steps) != 0 {
		t.Errorf("unknown policy: %+v", kp)
	}
}

// A signed output that cannot be read is the worst case: no keyrestore
// path, and the DS removal already due.
func TestPlanUnreadableZone(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	in := planWorld(t, now, now, true, []enforcer.Role{enforcer.KSK, enforcer.ZSK}, enforcer.ZSK)
	in.ReadZone = func(*enforcer.Zone) (Signatures, error) { return Signatures{}, errors.New("no such file") }
	kp := Plan(in)
	zp := kp.Zones[0]
	if kp.Exit != 2 || zp.Feasible || zp.Path != PathRemoveDS || zp.Signatures != nil ||
		!strings.Contains(zp.Advice, "the signed output cannot be read (no such file): assume the worst") ||
		!strings.Contains(zp.Steps[0].Action, "already past: request it now") {
		t.Fatalf("%+v", zp)
	}
}

// kasp.xml without a required element, or with a duration that is not
// one, is refused with the policy and element named.
func TestReadKaspErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ body, want string }{
		{`<KASP><Policy name="p"><Keys><TTL>PT1H</TTL></Keys></Policy></KASP>`, `policy "p" has no <Zone/PropagationDelay>`},
		{`<KASP><Policy name="p"><Signatures><Resign>PT2H</Resign></Signatures><Keys><TTL>1 hour</TTL></Keys></Policy></KASP>`, `policy "p" <Keys/TTL>: "1 hour" is not an ISO 8601 duration`},
		{`<KASP><Policy`, `not a kasp.xml`},
	} {
		p := filepath.Join(dir, "kasp.xml")
		if err := os.WriteFile(p, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKasp(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.body, err, tt.want)
		}
	}
}
