package recovery

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
)

// What recover assess and recover verify print: text for the operator, and
// the JSON documents described by schema/recover-*.json.

// WriteText prints the verdict, each HSM, the lost keys and each zone.
func (a *Assessment) WriteText(out io.Writer) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "recover assess: %s\n", a.Summary)
	for _, h := range a.HSMs {
		switch {
		case !h.Reachable:
			fmt.Fprintf(w, "HSM %s: UNREACHABLE (%s): counted as holding nothing\n", h.Describe(), h.Error)
		case len(h.Missing) == 0:
			fmt.Fprintf(w, "HSM %s: all %s present\n", h.Describe(), human.Count(h.Present, "needed key"))
		default:
			fmt.Fprintf(w, "HSM %s: %s present, %d missing\n", h.Describe(), human.Count(h.Present, "needed key"), len(h.Missing))
		}
	}
	for _, l := range a.Lost {
		fmt.Fprintf(w, "KEY %s: %s\n", l, l.Fate())
	}
	for _, z := range a.Zones {
		sig := "signed output unreadable: " + z.Error
		if z.Error == "" {
			left := human.Duration(z.Left) + " left"
			if z.Left < 0 {
				left = "expired " + human.Duration(z.Left) + " ago"
			}
			sig = fmt.Sprintf("earliest RRSIG expires %s (%s, %s %s)", z.Expires.Format(human.Display), left, z.Signatures.Owner, z.Signatures.Type)
		}
		ds := "no DS at the parent"
		if z.DSAtParent {
			ds = "DS removal by " + z.DSRemovalBy.Format(human.Display)
		}
		decision := ""
		if z.Decision != "" {
			decision = strings.ToUpper(z.Decision) + ": "
		}
		fmt.Fprintf(w, "ZONE %s: %s; %s (DS known from %s); %s%s\n", z.Zone, sig, ds, z.DSSource, decision, z.Advice)
	}
	return w.Flush()
}

// Doc is recover assess's JSON document.
func (a *Assessment) Doc() any {
	return jsondoc.New("recover-assess", a)
}

// WriteText prints the verdict, each HSM with what it misses, and the
// keys lost.
func (v *Verification) WriteText(out io.Writer) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "recover verify: %s\n", v.Summary)
	for _, h := range v.HSMs {
		fmt.Fprintf(w, "HSM %s: %d missing, %d another key pair; %s\n", h.Describe(), len(h.Missing), len(h.Differs), h.SerialNote)
		for _, l := range h.Missing {
			fmt.Fprintf(w, "  MISSING %s\n", l)
		}
		for _, l := range h.Differs {
			fmt.Fprintf(w, "  DIFFERS %s: another key pair under its CKA_ID\n", l)
		}
	}
	for _, l := range v.Lost {
		fmt.Fprintf(w, "LOST %s: handed out after the last confirmed ceremony, on no HSM: lost for good (ods-keyguard recover plan)\n", l)
	}
	for _, l := range v.Unused {
		fmt.Fprintf(w, "UNUSED %s: made after the last ceremony, never handed out, on no HSM\n", l)
	}
	return w.Flush()
}

// Doc is recover verify's JSON document.
func (v *Verification) Doc() any {
	return jsondoc.New("recover-verify", v)
}

// String names a key with its role, use and zones: "LOC ZSK (in use,
// example.com)".
func (l LostKey) String() string {
	zones := "no zone"
	if len(l.Zones) > 0 {
		zones = strings.Join(l.Zones, ",")
	}
	return fmt.Sprintf("%s %s (%s, %s)", l.Locator, l.Role, l.Use, zones)
}

// Fate says what losing the key means, by its class.
func (l LostKey) Fate() string {
	switch {
	case l.Class == InUse && l.Recoverable:
		return "in use, " + l.backup()
	case l.Class == InUse:
		return "in use, handed out after the last confirmed ceremony: lost for good (ods-keyguard recover plan)"
	case l.Recoverable:
		return "unused, " + l.backup()
	}
	return "made after the last ceremony, never handed out: lost with the HSMs; remove it from the enforcer's pool after the restore (recover prune-pool)"
}

// backup says where a recoverable key's backup is: on the backup token
// its ceremony read, or, for a ceremony confirmed on the operator's word,
// on whatever backup the operator made then.
func (l LostKey) backup() string {
	if l.BackupToken == "" {
		return "backed up at ceremony " + l.Ceremony + " on the operator's word: no backup token was read then, find the backup it was made on"
	}
	return "on the backup token of ceremony " + l.Ceremony
}

// WriteText prints the keys to remove, the statements that remove them,
// and what was done.
func (p *Prune) WriteText(out io.Writer) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "recover prune-pool: %s\n", p.Summary)
	for _, b := range p.Blocked {
		fmt.Fprintf(w, "BLOCKED %s\n", b)
	}
	for _, k := range p.Keys {
		fmt.Fprintf(w, "KEY %s %s policy %s, repository %s, made %s (hsmKey id %d, %s): on no HSM, never used by a zone\n",
			k.Locator, k.Role, k.Policy, k.Repository, k.Inception.Format(human.Display), k.ID, k.State)
	}
	if len(p.Blocked) > 0 || len(p.Keys) == 0 {
		return w.Flush()
	}
	fmt.Fprintf(w, "on %s, in one transaction (SQLite: BEGIN IMMEDIATE; MySQL: START TRANSACTION), each row read again first:\n", p.Datastore)
	for _, s := range p.Statements {
		fmt.Fprintf(w, "  %s\n", s)
	}
	fmt.Fprintln(w, "  COMMIT;")
	if !p.Applied {
		fmt.Fprintln(w, "dry run: nothing changed; stop ods-enforcerd (on every host that uses this database), then run again with --apply")
		return w.Flush()
	}
	if p.Copy != "" {
		fmt.Fprintf(w, "database copy before the change: %s\n", p.Copy)
	}
	fmt.Fprintf(w, "the rows deleted, to put back if need be: %s\n", p.Undo)
	return w.Flush()
}

// Doc is recover prune-pool's JSON document.
func (p *Prune) Doc() any {
	return jsondoc.New("recover-prune-pool", p)
}

// WriteText prints the verdict, then per zone its path, the timing it
// was computed from, and each step with its date.
func (kp *KeyPlan) WriteText(out io.Writer) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "recover plan: %s\n", kp.Summary)
	for _, u := range kp.Unreachable {
		fmt.Fprintf(w, "HSM %s: UNREACHABLE: counted as holding nothing\n", u)
	}
	for _, z := range kp.Zones {
		verdict := "KEEPS SIGNED"
		if !z.Feasible {
			verdict = "GOES INSECURE"
		}
		fmt.Fprintf(w, "ZONE %s (policy %s): lost for good: %s; DS at the parent: %v (%s); path: %s; %s: %s\n",
			z.Zone, z.Policy, strings.Join(z.LostRoles, ", "), z.DSAtParent, z.DSSource, z.Path, verdict, z.Advice)
		if z.Seconds != nil && len(z.Steps) > 0 {
			t := z.Timing
			fmt.Fprintf(w, "  timing from kasp.xml: TTLkey %s, Dprp %s, TTLsig %s, Dsgn %s, DprpP %s, TTLds %s, Dreg %s, margin %s\n",
				human.Duration(t.TTLkey), human.Duration(t.Dprp), human.Duration(t.TTLsig), human.Duration(t.Dsgn),
				human.Duration(t.DprpP), human.Duration(t.TTLds), human.Duration(t.Dreg), human.Duration(kp.Margin))
			for _, a := range t.Assumed {
				fmt.Fprintf(w, "  assumed: %s\n", a)
			}
		}
		for _, s := range z.Steps {
			hand := ""
			if s.ByHand {
				hand = "BY HAND: "
			}
			off := "now +" + human.Duration(time.Duration(s.Offset)*time.Second)
			if s.Offset < 0 {
				off = "now -" + human.Duration(time.Duration(-s.Offset)*time.Second)
			}
			fmt.Fprintf(w, "  %s %s (%s: %s): %s%s\n", s.Name, s.At.Format(human.Display), off, s.Formula, hand, s.Action)
			fmt.Fprintf(w, "    OpenDNSSEC 2.1 %s\n", s.OpenDNSSEC)
		}
	}
	return w.Flush()
}

// Doc is recover plan's JSON document.
func (kp *KeyPlan) Doc() any {
	return jsondoc.New("recover-plan", struct {
		MarginSeconds int64 `json:"margin_seconds"`
		*KeyPlan
	}{secs(kp.Margin), kp})
}
