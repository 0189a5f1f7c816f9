package recovery

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// A key in use that no backup holds is lost for good, yet the zone can
// often stay signed: it is still validly signed when the key is lost, and
// draft-ietf-dnsop-dnssec-keyrestore-01 shows how to roll to new keys
// while the old signatures last. An inoperable ZSK with the KSK operable:
// pre-publish a new ZSK, ready at Trdy = Tpub + Dprp + TTLkey, the old ZSK
// and its RRSIGs staying until Tdea = Trdy + Iret. An inoperable KSK or
// CSK: a double-DS rollover, ready at Trdy = Tsbm + Dreg + DprpP + TTLds,
// the old DNSKEY and RRSIGs staying until Tdea = Trdy + Iret. The path is
// feasible only if the zone's current signatures outlast Tdea plus a
// margin; otherwise the DS must go before they expire.

// Paths of a plan.
const (
	PathZSK      = "pre-publish a new ZSK"
	PathDoubleDS = "double-DS rollover to a new KSK"
	PathCSK      = "double-DS rollover to a new CSK"
	PathBoth     = "double-DS rollover to a new KSK, then a new ZSK"
	PathRemoveDS = "remove the DS: the zone goes insecure, then new keys"
	PathNewKeys  = "no DS at the parent: new keys at once"
)

// Step is one dated step of a plan.
type Step struct {
	Name string    `json:"name"` // Tpub, Trdy, Tdea ...
	At   time.Time `json:"at"`
	// Offset is At - the plan's time, in seconds: what the formula gives.
	Offset     int64  `json:"offset_seconds"`
	Formula    string `json:"formula"`
	Action     string `json:"action"`
	OpenDNSSEC string `json:"opendnssec"` // what OpenDNSSEC 2.1 does for it, or cannot
	ByHand     bool   `json:"by_hand"`
}

// ZonePlan is the plan for one zone with a key in use lost for good.
type ZonePlan struct {
	Zone       string      `json:"zone"`
	Policy     string      `json:"policy"`
	LostRoles  []string    `json:"lost_roles"`
	Lost       []LostKey   `json:"lost"`
	Path       string      `json:"path"`
	Feasible   bool        `json:"feasible"`
	Signatures *Signatures `json:"signatures"`
	Error      string      `json:"error,omitempty"`
	// Expires is when the zone's first RRSIG expires (now when the signed
	// output cannot be read): the old signatures last until then.
	Expires time.Time `json:"expires"`
	// Needed is when the keyrestore path needs the old signatures until:
	// Tdea plus the margin. Zero on the paths that keep none.
	Needed      *time.Time       `json:"signatures_needed_until"`
	DSAtParent  bool             `json:"ds_at_parent"`
	DSSource    string           `json:"ds_source"`
	DSRemovalBy time.Time        `json:"ds_removal_by"`
	Timing      Timing           `json:"timing"`
	Seconds     map[string]int64 `json:"timing_seconds"`
	Steps       []Step           `json:"steps"`
	Advice      string           `json:"advice"`
}

// KeyPlan is the answer of recover plan.
type KeyPlan struct {
	Now     time.Time     `json:"now"`
	Summary string        `json:"summary"`
	Exit    int           `json:"exit"`
	Margin  time.Duration `json:"-"`
	// Unreachable names the HSMs that did not answer: counted as holding
	// nothing, as assess counts them.
	Unreachable []string   `json:"unreachable"`
	Zones       []ZonePlan `json:"zones"`
}

// PlanInput is what a plan is made from: what assess reads, the policies'
// timing from kasp.xml, the margin, and optionally one zone.
type PlanInput struct {
	Input
	Kasp   map[string]Timing
	Margin time.Duration
	Zone   string // "" every zone
}

// Plan works out, per zone with a key in use lost for good, which of the
// draft's paths applies and when each step is due.
func Plan(in PlanInput) *KeyPlan {
	a := Assess(in.Input)
	kp := &KeyPlan{Now: in.Now, Margin: in.Margin, Zones: []ZonePlan{}, Unreachable: []string{}}
	for _, h := range a.HSMs {
		if !h.Reachable {
			kp.Unreachable = append(kp.Unreachable, fmt.Sprintf("%s: %s", h.Describe(), h.Error))
		}
	}
	byZone := map[string][]LostKey{}
	for _, l := range a.Lost {
		if !l.LostForGood() {
			continue
		}
		for _, z := range l.Zones {
			byZone[z] = append(byZone[z], l)
		}
	}
	policy := map[string]string{}
	for _, z := range in.State.Zones {
		if z.Policy != nil {
			policy[z.Name] = z.Policy.Name
		}
	}
	unknown := false
	for _, zt := range a.Zones {
		lost := byZone[zt.Zone]
		if len(lost) == 0 || (in.Zone != "" && !strings.EqualFold(strings.TrimSuffix(in.Zone, "."), zt.Zone)) {
			continue
		}
		zp := ZonePlan{Zone: zt.Zone, Policy: policy[zt.Zone], Lost: lost, Signatures: zt.Signatures, Error: zt.Error,
			Expires: zt.Expires, DSAtParent: zt.DSAtParent, DSSource: zt.DSSource, Steps: []Step{}}
		roles := map[string]bool{}
		for _, l := range lost {
			roles[l.Role] = true
		}
		for r := range roles {
			zp.LostRoles = append(zp.LostRoles, r)
		}
		sort.Strings(zp.LostRoles)
		t, ok := in.Kasp[zp.Policy]
		if !ok {
			zp.Advice = fmt.Sprintf("policy %q is not in kasp.xml: no dates can be given; the signatures last until %s", zp.Policy, zp.Expires.Format(human.Display))
			zp.Timing = Timing{Policy: zp.Policy, Assumed: []string{}}
			zp.Seconds = zp.Timing.Seconds()
			unknown = true
			kp.Zones = append(kp.Zones, zp)
			continue
		}
		zp.Timing, zp.Seconds = t, t.Seconds()
		zp.DSRemovalBy = zp.Expires.Add(-(t.Dreg + t.DprpP + t.TTLds))
		zp.plan(in.Now, in.Margin, roles)
		kp.Zones = append(kp.Zones, zp)
	}
	removals := 0
	for _, zp := range kp.Zones {
		if !zp.Feasible {
			removals++
		}
	}
	switch {
	case unknown:
		kp.Exit = 3
		kp.Summary = "a zone's policy is not in kasp.xml: its dates cannot be computed"
	case len(kp.Zones) == 0:
		kp.Summary = "no key in use is lost for good: nothing to plan (recover assess says what to restore)"
		if in.Zone != "" {
			kp.Summary = fmt.Sprintf("zone %s has no key in use lost for good: nothing to plan", in.Zone)
		}
	case removals == 0:
		kp.Exit = 1
		kp.Summary = fmt.Sprintf("%s keys in use lost for good; every one can stay signed on the draft-ietf-dnsop-dnssec-keyrestore path: follow the steps by their dates", human.Count(len(kp.Zones), "zone has", "zones have"))
	default:
		kp.Exit = 2
		kp.Summary = fmt.Sprintf("%s keys in use lost for good; %d cannot stay signed: their signatures expire too soon, request DS removal by the date given", human.Count(len(kp.Zones), "zone has", "zones have"), removals)
	}
	// A key counted lost because its HSM did not answer is not known to be
	// lost: the plan is the worst case, not a fact.
	if prefix := uncertain(a.HSMs); prefix != "" && len(kp.Zones) > 0 && kp.Exit != 3 {
		kp.Summary, kp.Exit = prefix+kp.Summary, 3
	}
	return kp
}

// plan chooses the path and dates its steps.
func (zp *ZonePlan) plan(now time.Time, margin time.Duration, roles map[string]bool) {
	t := zp.Timing
	step := func(name string, at time.Time, formula, action, ods string, byHand bool) {
		zp.Steps = append(zp.Steps, Step{Name: name, At: at, Offset: secs(at.Sub(now)), Formula: formula, Action: action, OpenDNSSEC: ods, ByHand: byHand})
	}
	ksk, csk, zsk := roles["KSK"], roles["CSK"], roles["ZSK"]
	if !zp.DSAtParent {
		zp.Path, zp.Feasible = PathNewKeys, true
		step("Tnow", now, "Tnow", "roll every lost key to a new one now: no DS at the parent, so no resolver validates the zone through it and nothing needs to wait",
			"can: ods-enforcer key rollover --zone "+zp.Zone+" --keytype "+strings.Join(zp.LostRoles, "/")+" makes and publishes new keys; the signer signs with them", false)
		zp.Advice = "no DS at the parent: roll to new keys now"
		return
	}
	freeze := "its signer re-signs the zone with the keys it holds and drops the RRSIGs it cannot re-create, so the old signatures must be kept by hand: keep ods-signerd from writing this zone and serve the last signed output unchanged"
	var tdea time.Time
	switch {
	case zsk && !ksk && !csk:
		zp.Path = PathZSK
		tpub := now
		trdy := tpub.Add(t.Dprp + t.TTLkey)
		tdea = trdy.Add(t.Dsgn + t.Dprp + t.TTLsig)
		step("Tpub", tpub, "Tpub = now",
			"make a new ZSK and publish its DNSKEY: add it to the DNSKEY RRset, signed by the KSK, which still works; keep the lost ZSK's DNSKEY and every RRSIG it made as they are",
			"can: ods-enforcer key rollover --zone "+zp.Zone+" --keytype ZSK makes the new ZSK on the HSM and pre-publishes it; cannot: "+freeze+"; sign the new DNSKEY RRset with the KSK by hand (for example ldns-signzone or dnssec-signzone with the KSK from the HSM) and put it in the served zone",
			true)
		step("Trdy", trdy, "Trdy = Tpub + Dprp + TTLkey",
			"the new ZSK's DNSKEY is in every cache: sign the zone with the new ZSK",
			"can: let ods-signerd sign the zone again (ods-signer sign "+zp.Zone+"): it signs with the new ZSK; keep the lost ZSK's DNSKEY published", false)
		step("Tdea", tdea, "Tdea = Trdy + Iret, Iret = Dsgn + Dprp + TTLsig",
			"the lost ZSK's RRSIGs are out of every cache: remove its DNSKEY",
			"can: the enforcer withdraws the old ZSK as the rollover ends (ods-enforcer key list shows it retired); ods-enforcer key purge removes it", false)
	default:
		zp.Path = PathDoubleDS
		iret, iretF := t.Dprp+t.TTLkey, "Iret = Dprp + TTLkey"
		if csk {
			zp.Path = PathCSK
			iret, iretF = t.Dsgn+t.Dprp+max(t.TTLkey, t.TTLsig), "Iret = Dsgn + Dprp + max(TTLkey, TTLsig)"
		}
		if ksk && zsk {
			zp.Path = PathBoth
		}
		newKey := "KSK"
		if csk {
			newKey = "CSK"
		}
		tsbm := now
		trdy := tsbm.Add(t.Dreg + t.DprpP + t.TTLds)
		step("Tsbm", tsbm, "Tsbm = now",
			"make a new "+newKey+" and submit its DS to the parent, next to the old DS; change nothing in the zone: the DNSKEY RRset and the RRSIGs of the lost keys must stay as they are",
			"can: ods-enforcer key generate and key rollover --zone "+zp.Zone+" --keytype "+newKey+" make the new key on the HSM, and ods-enforcer key export --zone "+zp.Zone+" --ds gives its DS; cannot: 2.1 rolls a KSK by publishing the new DNSKEY at once, which needs a DNSKEY RRSIG the lost key cannot make: submit the DS to the registrar by hand; and "+freeze,
			true)
		step("Trdy", trdy, "Trdy = Tsbm + Dreg + DprpP + TTLds",
			"the new DS is in every cache: publish the DNSKEY RRset with the new "+newKey+" (the old DNSKEY may stay), signed by the new "+newKey,
			"can: tell the enforcer the DS is there (ods-enforcer key ds-seen --zone "+zp.Zone+" --keytag TAG) and let ods-signerd sign the DNSKEY RRset with the new key", false)
		tdea = trdy.Add(iret)
		if ksk && zsk {
			trdyZ := trdy.Add(t.Dprp + t.TTLkey)
			tdea = trdyZ.Add(t.Dsgn + t.Dprp + t.TTLsig)
			zp.Steps[1].Action += ", with a new ZSK in it; keep the lost ZSK's DNSKEY and RRSIGs"
			step("TrdyZ", trdyZ, "TrdyZ = Trdy + Dprp + TTLkey",
				"the new ZSK and the new DNSKEY RRset are in every cache: sign the zone with the new ZSK, and request removal of the old DS",
				"can: ods-signer sign "+zp.Zone+" signs with the new ZSK; the old DS goes through ods-enforcer key ds-retract (and the registrar, by hand)", false)
			step("Tdea", tdea, "Tdea = TrdyZ + Iret, Iret = Dsgn + Dprp + TTLsig",
				"the lost keys' RRSIGs are out of every cache: remove their DNSKEYs",
				"can: the enforcer withdraws the old keys as the rollovers end; ods-enforcer key purge removes them", false)
		} else {
			step("Tdea", tdea, "Tdea = Trdy + "+iretF,
				"the old DNSKEY RRset and its RRSIGs are out of every cache: remove the old DNSKEY and request removal of the old DS",
				"can: ods-enforcer key ds-retract for the old key's DS (and the registrar, by hand); the enforcer withdraws the old key", false)
		}
	}
	needed := tdea.Add(margin)
	zp.Needed = &needed
	zp.Feasible = zp.Error == "" && !zp.Expires.Before(needed)
	if zp.Feasible {
		zp.Advice = fmt.Sprintf("%s: the signatures last until %s, past Tdea %s plus the margin %s; the zone stays signed. If a step slips, fall back: request DS removal by %s",
			zp.Path, zp.Expires.Format(human.Display), tdea.Format(human.Display), human.Duration(margin), zp.DSRemovalBy.Format(human.Display))
		return
	}
	why := fmt.Sprintf("the signatures expire %s, before %s (Tdea %s plus the margin %s)", zp.Expires.Format(human.Display),
		needed.Format(human.Display), tdea.Format(human.Display), human.Duration(margin))
	if zp.Error != "" {
		why = fmt.Sprintf("the signed output cannot be read (%s): assume the worst", zp.Error)
	}
	zp.Path = PathRemoveDS
	zp.Steps = []Step{}
	past := ""
	if zp.DSRemovalBy.Before(now) {
		past = " (already past: request it now; the zone is bogus until the DS is gone from caches)"
	}
	step("Trem", zp.DSRemovalBy, "Trem = Texp - (Dreg + DprpP + TTLds)",
		"request removal of every DS of the zone at the parent"+past,
		"can: ods-enforcer key ds-retract records it; the registrar acts by hand; keep serving the old signatures until they expire", true)
	step("Texp", zp.Expires, "Texp = the zone's first RRSIG expiration",
		"the DS is gone from caches and the zone is insecure: roll to new keys, and submit the new DS once the zone is signed with them",
		"can: ods-enforcer key rollover --zone "+zp.Zone+" for every lost key, then the normal DS submission (ods-keyguard releases it once a ceremony backs the new KSK up)", false)
	zp.Advice = "keyrestore path not possible: " + why + "; request DS removal by " + zp.DSRemovalBy.Format(human.Display) + past
}
