package recovery

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// Token is what recovery knows of one HSM: whether it answered, and what
// it holds.
type Token struct {
	Name       string // as in the configuration: "site-b"
	Kind       string // repository, mirror or backup token
	Repository string
	Serial     string
	Err        error
	Keys       hsmcheck.Holding
}

// has reports whether the token answered and holds locator.
func (t Token) has(locator string) bool {
	if t.Err != nil || t.Keys == nil {
		return false
	}
	_, n := t.Keys.Find(locator)
	return n > 0
}

// Tokens turns token results into what recovery works with.
func Tokens(results []hsmcheck.Result) []Token {
	var out []Token
	for _, r := range results {
		t := Token{Name: r.Token.Name, Kind: r.Token.Kind, Repository: r.Token.Repository, Err: r.Err}
		if r.Contents != nil {
			t.Serial, t.Keys = r.Contents.Serial, r.Contents
		}
		out = append(out, t)
	}
	return out
}

// Verdicts of assess, worst last.
const (
	NothingLost = "nothing lost"
	Replace     = "replace HSMs" // some HSMs lost keys another still holds
	Restore     = "restore from the backup token"
)

// HSM is one token's part in the assessment.
type HSM struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Repository string   `json:"repository"`
	Reachable  bool     `json:"reachable"`
	Error      string   `json:"error,omitempty"`
	Present    int      `json:"present"`
	Missing    []string `json:"missing"`
}

// Describe names the HSM as the messages do: mirror "site-b".
func (h HSM) Describe() string { return tokenName(h.Kind, h.Name) }

func tokenName(kind, name string) string { return fmt.Sprintf("%s %q", kind, name) }

// Classes of keys in recovery: what losing one means.
const (
	// InUse: handed out to a zone (assigned, published, signing, retiring,
	// or with a DS anywhere). Lost without a backup, it is lost for good.
	InUse = "in use"
	// Covered: in the pool, never handed out, and in a confirmed ceremony:
	// on the backup token.
	Covered = "unused, backed up"
	// After: in the pool, never handed out, and made after the last
	// confirmed ceremony. Losing it costs nothing in use, as rule 2
	// intends, but the enforcer still lists it, takes it at a rollover and
	// fails on it (recover prune-pool).
	After = "made after the last ceremony"
)

// Class says which of the three classes k is in.
func Class(cov ledger.Coverage, k *enforcer.Key) string {
	switch {
	case !Unused(k):
		return InUse
	case cov.Covering(k.Repository, k.Locator) != nil:
		return Covered
	}
	return After
}

// Unused reports whether no zone ever took k: no keyData names it. Most
// such keys are in the pool (UNUSED); OpenDNSSEC 2.1 also leaves PRIVATE
// with no keyData a pool key it took for a rollover and could not use (no
// HSM held it: "updatePolicy: error keytag").
func Unused(k *enforcer.Key) bool {
	return k.State != enforcer.Delete && len(k.Uses) == 0
}

// LostKey is a needed key that no HSM of its repository holds.
type LostKey struct {
	Locator     string   `json:"locator"`
	Repository  string   `json:"repository"`
	Role        string   `json:"role"`
	Use         string   `json:"use"`
	Zones       []string `json:"zones"`
	Class       string   `json:"class"`
	Recoverable bool     `json:"recoverable"` // in a confirmed ceremony, so on the backup token
	Ceremony    string   `json:"ceremony,omitempty"`
	// BackupToken is the backup token the ceremony verified the key on;
	// "" when its backup was attested by the operator, no token read.
	BackupToken string `json:"backup_token,omitempty"`
}

// LostForGood reports whether losing the key costs something in use: a
// key handed out to a zone that no confirmed ceremony covers.
func (l LostKey) LostForGood() bool { return l.Class == InUse && !l.Recoverable }

// Counts sorts the keys missing everywhere into the three classes.
type Counts struct {
	InUse       int `json:"in_use"`
	LostForGood int `json:"lost_for_good"` // in use, in no confirmed ceremony
	Covered     int `json:"unused_backed_up"`
	After       int `json:"unused_after_ceremony"` // lost, never handed out
}

func count(lost []LostKey) Counts {
	var c Counts
	for _, l := range lost {
		switch {
		case l.Class == InUse:
			c.InUse++
			if !l.Recoverable {
				c.LostForGood++
			}
		case l.Class == Covered:
			c.Covered++
		default:
			c.After++
		}
	}
	return c
}

// Text says it in words: "2 in use, all on the backup token; ...".
func (c Counts) Text() string {
	var parts []string
	switch {
	case c.InUse == 0:
		parts = append(parts, "none in use")
	case c.LostForGood == 0:
		parts = append(parts, fmt.Sprintf("%d in use, all on the backup token", c.InUse))
	default:
		parts = append(parts, fmt.Sprintf("%d in use, %d of them in no confirmed ceremony: lost for good (ods-keyguard recover plan)", c.InUse, c.LostForGood))
	}
	if c.Covered > 0 {
		parts = append(parts, fmt.Sprintf("%d unused, on the backup token", c.Covered))
	}
	if c.After > 0 {
		parts = append(parts, fmt.Sprintf("%d unused made after the last ceremony, never handed out: lost, nothing is in use; after the restore, remove them from the enforcer's pool (recover prune-pool)", c.After))
	}
	return strings.Join(parts, "; ")
}

// ZoneTiming is how long a zone's signatures last, and what that means.
type ZoneTiming struct {
	Zone       string      `json:"zone"`
	Signatures *Signatures `json:"signatures"`      // nil when the signed output cannot be read
	Error      string      `json:"error,omitempty"` // the signed file could not be read: worst case
	// Expires is the earliest RRSIG expiration; now when the signed output
	// cannot be read (the worst case).
	Expires time.Time `json:"-"`
	// Left is Expires - now: negative once expired.
	Left       time.Duration `json:"-"`
	DSAtParent bool          `json:"ds_at_parent"`
	// DSSource says where DSAtParent comes from: the parent's own answer,
	// ods-keyguard's records of what it forwarded, or the enforcer's word.
	DSSource string `json:"ds_source"`
	// DSRemovalBy is the latest moment to ask the parent to remove the DS
	// so that it is gone from caches before the signatures expire.
	DSRemovalBy time.Time `json:"ds_removal_by"`
	// Impact: the roles this zone loses for good.
	LostRoles []string `json:"lost_for_good,omitempty"`
	// Decision with --delivery: "can wait for the new HSMs", "go insecure",
	// or "" without --delivery.
	Decision string `json:"decision,omitempty"`
	Advice   string `json:"advice"`
}

// MarshalJSON writes the expiry and the time left (in seconds, negative
// once expired), or null for both when the signed output could not be read.
func (zt ZoneTiming) MarshalJSON() ([]byte, error) {
	type plain ZoneTiming
	doc := struct {
		plain
		Expires *time.Time `json:"expires"`
		Left    *int64     `json:"time_left_seconds"`
	}{plain: plain(zt)}
	if zt.Error == "" {
		left := int64(zt.Left.Seconds())
		doc.Expires, doc.Left = &zt.Expires, &left
	}
	return json.Marshal(doc)
}

// Assessment is the answer of recover assess.
type Assessment struct {
	Verdict  string       `json:"verdict"`
	Summary  string       `json:"summary"`
	Exit     int          `json:"exit"`
	HSMs     []HSM        `json:"hsms"`
	Replace  []string     `json:"replace,omitempty"` // HSMs to replace from their peers
	Lost     []LostKey    `json:"lost"`
	Classes  Counts       `json:"classes"`
	Zones    []ZoneTiming `json:"zones"`
	Ceremony string       `json:"last_ceremony,omitempty"`
	Delivery string       `json:"delivery,omitempty"` // as the operator gave it
}

// Needed lists the keys OpenDNSSEC needs: every key not DELETE (in use by a
// zone, retiring, or in the pool).
func Needed(st *enforcer.State) []*enforcer.Key {
	var out []*enforcer.Key
	for _, k := range st.Keys {
		if k.State != enforcer.Delete {
			out = append(out, k)
		}
	}
	return out
}

// Input is what assess works from.
type Input struct {
	Now      time.Time
	State    *enforcer.State
	Store    *ledger.Store
	Tokens   []Token
	Delivery time.Duration // 0: not given
	// ReadZone reads a zone's signed output; nil: every zone is the worst case.
	ReadZone func(z *enforcer.Zone) (Signatures, error)
	// Book is ods-keyguard's DS records, and Parent the parent's DS by zone
	// where it was read: which zones really have a DS to remove.
	Book   *ledger.DSBook
	Parent map[string]parent.Answer
}

// Assess decides which of the procedure's paths applies.
func Assess(in Input) *Assessment {
	a := &Assessment{Lost: []LostKey{}, HSMs: []HSM{}, Zones: []ZoneTiming{}}
	needed := Needed(in.State)
	byRepo := map[string][]Token{}
	for _, t := range in.Tokens {
		byRepo[t.Repository] = append(byRepo[t.Repository], t)
		h := HSM{Name: t.Name, Kind: t.Kind, Repository: t.Repository, Reachable: t.Err == nil, Missing: []string{}}
		if t.Err != nil {
			h.Error = t.Err.Error()
		}
		for _, k := range needed {
			if k.Repository != t.Repository {
				continue
			}
			if t.has(k.Locator) {
				h.Present++
			} else {
				h.Missing = append(h.Missing, k.Locator)
			}
		}
		a.HSMs = append(a.HSMs, h)
	}
	cov := in.Store.Coverage()
	damagedRepos := map[string]bool{} // repositories with a key on no HSM
	for _, k := range needed {
		held := false
		for _, t := range byRepo[k.Repository] {
			if t.has(k.Locator) {
				held = true
			}
		}
		if held {
			continue
		}
		damagedRepos[k.Repository] = true
		a.Lost = append(a.Lost, lostKey(cov, k))
	}
	for _, h := range a.HSMs {
		if len(h.Missing) > 0 && !damagedRepos[h.Repository] {
			a.Replace = append(a.Replace, h.Describe())
		}
	}
	if c := in.Store.LastConfirmed(""); c != nil {
		a.Ceremony = c.ID
	}
	a.Classes = count(a.Lost)
	switch {
	case len(a.Lost) > 0:
		a.Verdict, a.Exit = Restore, 1
		a.Summary = fmt.Sprintf("every HSM of %s lost keys: restore from the backup token (%s missing everywhere: %s)",
			joinKeys(damagedRepos), human.Count(len(a.Lost), "key"), a.Classes.Text())
		if a.Classes.InUse-a.Classes.LostForGood+a.Classes.Covered == 0 {
			a.Summary = fmt.Sprintf("every HSM of %s lost keys that no backup holds: nothing to restore (%s missing everywhere: %s)",
				joinKeys(damagedRepos), human.Count(len(a.Lost), "key"), a.Classes.Text())
		}
		if a.Classes.LostForGood > 0 {
			a.Exit = 2
		}
	case len(a.Replace) > 0:
		a.Verdict, a.Exit = Replace, 1
		a.Summary = fmt.Sprintf("some HSMs lost keys that another still holds: follow the HSM replacement procedure for %s; do not restore from a backup token, it misses every key made since the last ceremony",
			strings.Join(a.Replace, ", "))
	default:
		a.Verdict, a.Exit = NothingLost, 0
		a.Summary = "nothing lost: every key OpenDNSSEC needs is on every HSM"
	}
	a.zones(in, damagedRepos)
	// The procedure's first step is to be certain the HSMs lost the keys:
	// one that did not answer was counted as holding nothing, the worst
	// case, which is not a certainty.
	if prefix := uncertain(a.HSMs); prefix != "" {
		a.Summary, a.Exit = prefix+a.Summary, 3
	}
	return a
}

// uncertain is what a verdict that counted unreachable HSMs as holding
// nothing starts with: `cannot tell for certain, mirror "site-b" could not
// be read: if it holds nothing, `; "" when every HSM answered.
func uncertain(hsms []HSM) string {
	var names []string
	for _, h := range hsms {
		if !h.Reachable {
			names = append(names, h.Describe())
		}
	}
	switch len(names) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("cannot tell for certain, %s could not be read: if it holds nothing, ", names[0])
	}
	return fmt.Sprintf("cannot tell for certain, %s and %s could not be read: if they hold nothing, ",
		strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

func joinKeys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%q", k))
	}
	sort.Strings(out)
	return "repository " + strings.Join(out, ", ")
}

// zones works out each zone's deadline; with a delivery time, its decision.
func (a *Assessment) zones(in Input, damaged map[string]bool) {
	lostForGood := map[string]map[string]bool{} // zone -> roles
	lost := map[string]bool{}                   // repository/locator, on no HSM
	for _, l := range a.Lost {
		lost[l.Repository+"/"+strings.ToLower(l.Locator)] = true
	}
	for _, l := range a.Lost {
		if !l.LostForGood() {
			continue
		}
		for _, z := range l.Zones {
			if lostForGood[z] == nil {
				lostForGood[z] = map[string]bool{}
			}
			lostForGood[z][l.Role] = true
		}
	}
	for _, z := range in.State.Zones {
		zt := ZoneTiming{Zone: z.Name, Expires: in.Now}
		if in.ReadZone == nil {
			zt.Error = "no signed output to read"
		} else if sigs, err := in.ReadZone(z); err != nil {
			zt.Error = err.Error()
		} else {
			zt.Signatures, zt.Expires = &sigs, sigs.Earliest
		}
		zt.DSAtParent, zt.DSSource = dsAtParent(in, z)
		var margin time.Duration
		if p := z.Policy; p != nil {
			margin = p.ParentDSTTL + p.ParentPropagationDelay + p.ParentRegistrationDelay
		}
		zt.DSRemovalBy = zt.Expires.Add(-margin)
		zt.Left = zt.Expires.Sub(in.Now)
		for r := range lostForGood[z.Name] {
			zt.LostRoles = append(zt.LostRoles, r)
		}
		sort.Strings(zt.LostRoles)
		// A zone is affected by a key of its own that no HSM holds; a
		// zone whose keys are all on a working HSM is signed as ever,
		// whatever else its repository lost.
		affected := false
		for _, u := range z.Keys {
			if damaged[u.Key.Repository] && lost[u.Key.Repository+"/"+strings.ToLower(u.Key.Locator)] {
				affected = true
			}
		}
		zt.decide(in, affected, a)
		a.Zones = append(a.Zones, zt)
	}
}

func (zt *ZoneTiming) decide(in Input, affected bool, a *Assessment) {
	by := zt.DSRemovalBy.Format(human.Display)
	lost := strings.Join(zt.LostRoles, " and ") + " in use is"
	if len(zt.LostRoles) > 1 {
		lost = strings.Join(zt.LostRoles, " and ") + " in use are"
	}
	if len(zt.LostRoles) == 0 {
		lost = ""
	}
	switch {
	case !affected:
		zt.Advice = "its keys are on a working HSM"
		return
	case lost != "" && zt.DSAtParent:
		// No decision: recover plan tells whether it can stay signed.
		zt.Advice = fmt.Sprintf("its %s lost for good and the parent holds its DS: ods-keyguard recover plan says whether a rollover keeps it signed (draft-ietf-dnsop-dnssec-keyrestore-01), else request DS removal by %s", lost, by)
	case lost != "":
		zt.Advice = fmt.Sprintf("its %s lost for good, but no DS is at the parent: roll to new keys", lost)
	case in.Delivery == 0:
		zt.Advice = fmt.Sprintf("signatures last until %s (%s); if the new HSMs take longer, request DS removal by %s", zt.Expires.Format(human.Display), leftText(zt.Left), by)
		if zt.Error != "" {
			zt.Advice = fmt.Sprintf("its signed output cannot be read (%s): assume the worst, request DS removal by %s", zt.Error, by)
		}
		if !zt.DSAtParent {
			zt.Advice += "; no DS is at the parent: nothing to remove"
		}
		return
	case in.Now.Add(in.Delivery).Before(zt.Expires):
		zt.Decision = "can wait for the new HSMs"
		zt.Advice = fmt.Sprintf("signatures last until %s, after the new HSMs arrive (%s)", zt.Expires.Format(human.Display), in.Now.Add(in.Delivery).Format(human.Display))
	case !zt.DSAtParent:
		zt.Decision = "can wait for the new HSMs"
		zt.Advice = "signatures expire before the new HSMs arrive, but no DS is at the parent: the zone is not validated"
	default:
		zt.Decision = "go insecure"
		zt.Advice = fmt.Sprintf("signatures expire %s, before the new HSMs arrive (%s): request DS removal by %s",
			zt.Expires.Format(human.Display), in.Now.Add(in.Delivery).Format(human.Display), by)
		if zt.Error != "" {
			zt.Advice = fmt.Sprintf("its signed output cannot be read (%s): assume the worst: request DS removal by %s", zt.Error, by)
		}
	}
	if zt.DSRemovalBy.Before(in.Now) && zt.Decision == "go insecure" {
		zt.Advice += " (already past: request it now; the zone is bogus until the DS is gone)"
	}
	if zt.Decision == "go insecure" {
		a.Exit = 2
	}
	if zt.Decision == "" && len(zt.LostRoles) > 0 {
		a.Exit = 2
	}
}

// leftText says how long the signatures last: "2d3h left", or "expired 4h
// ago".
func leftText(d time.Duration) string {
	if d < 0 {
		return "expired " + human.Duration(d) + " ago"
	}
	return human.Duration(d) + " left"
}

// dsAtParent says whether zone z has a DS at the parent, and how that is
// known: the parent's own answer where it was read; else, per KSK and CSK
// whose DS the enforcer has submitted, seen or is retracting, what
// ods-keyguard forwarded (a DS the hook withheld is not at the parent);
// a key the records know nothing of counts as at the parent, the worst
// case for a zone that loses its keys.
func dsAtParent(in Input, z *enforcer.Zone) (bool, string) {
	if a, ok := in.Parent[strings.ToLower(z.Name)]; ok && a.Err == nil {
		return len(a.DS) > 0, "the parent (" + a.Source + ")"
	}
	at, source := false, "the enforcer's database"
	for _, u := range z.Keys {
		if u.Role == enforcer.ZSK || (u.DSAtParent != enforcer.DSSubmitted && u.DSAtParent != enforcer.DSSeen && u.DSAtParent != enforcer.DSRetract) {
			continue
		}
		if in.Book == nil || in.Book.Created.IsZero() {
			at = true
			continue
		}
		k := in.Book.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
		switch {
		case k == nil:
			at, source = true, "the enforcer's database (ods-keyguard has no record of this DS: assumed at the parent)"
		case k.AtParent() || !k.InFlight.IsZero():
			at, source = true, "ods-keyguard's records of what it forwarded"
		default:
			if source == "the enforcer's database" {
				source = "ods-keyguard's records of what it forwarded"
			}
		}
	}
	return at, source
}
