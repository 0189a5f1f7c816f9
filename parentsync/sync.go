// Package parentsync tells the enforcer what the parent really serves:
// `ods-enforcer key ds-seen` for a DS that every parent server serves, and
// `ds-gone` for one that none serves any more, its TTL passed since. The
// enforcer takes these on anybody's word and moves the rollover on: a
// ds-gone given while the old DS is still the zone's only chain of trust
// (held by ods-keyguard for a successor that is withheld) makes the zone
// bogus. Here they come from the parent's own servers, all of them, and
// never while ods-keyguard holds the retraction.
package parentsync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// What parent sync does with a key's DS.
const (
	ActSeen    = "ds-seen" // told the enforcer ds-seen (or would, dry run)
	ActGone    = "ds-gone" // told the enforcer ds-gone (or would, dry run)
	ActWait    = "wait"    // the parent is not there yet: nothing told
	ActHeld    = "held"    // ods-keyguard holds the retraction: nothing told
	ActUnknown = "unknown" // a server could not be read, or the DS cannot be matched: nothing told
	ActFailed  = "failed"  // the enforcer command failed
)

// Server is what one parent server served of the zone, and whether that
// included the key's DS.
type Server struct {
	Server string   `json:"server"`
	DS     []string `json:"ds"`     // "KEYTAG ALG DIGESTTYPE DIGEST"; null when it could not be read
	Serves *bool    `json:"serves"` // it serves this key's DS; null when not known
	Error  string   `json:"error,omitempty"`
}

// Item is what parent sync found and did for one KSK or CSK of a zone whose
// DS the enforcer waits on (submitted, or retracted).
type Item struct {
	Zone       string     `json:"zone"`
	Role       string     `json:"role"`
	KeyTag     int        `json:"keytag"`
	Algorithm  int        `json:"algorithm"`
	Locator    string     `json:"locator"`
	EnforcerDS string     `json:"enforcer_ds"` // submitted or retracted
	Action     string     `json:"action"`
	Told       bool       `json:"told"` // the enforcer command ran and succeeded
	Reason     string     `json:"reason"`
	Vanished   *time.Time `json:"vanished"`   // first seen on no server (retracted DS)
	GoneAfter  *time.Time `json:"gone_after"` // when ds-gone may be told: vanished + DS TTL
	Servers    []Server   `json:"servers"`
}

// Report is what a run found and did.
type Report struct {
	DryRun bool   `json:"dry_run"`
	Items  []Item `json:"items"`
}

// Failed says whether an enforcer command failed.
func (r *Report) Failed() bool {
	for _, it := range r.Items {
		if it.Action == ActFailed {
			return true
		}
	}
	return false
}

// Unknown says whether something could not be established (a server not
// read, a DS not matched): nothing was told about it.
func (r *Report) Unknown() bool {
	for _, it := range r.Items {
		if it.Action == ActUnknown {
			return true
		}
	}
	return false
}

// Enforcer runs `ods-enforcer key ds-seen|ds-gone`.
type Enforcer interface {
	Run(ctx context.Context, args ...string) (string, error)
}

// Logger takes one line per action.
type Logger interface {
	Info(msg string)
	Warning(msg string)
	Err(msg string)
}

// Sources are what a run reads and whom it tells.
type Sources struct {
	Source   inventory.Source // the enforcer's database and the tokens
	Ledger   *ledger.Ledger
	Parent   parent.Config
	Tokens   []hsmcheck.Token
	Enforcer Enforcer
	Log      Logger
	Zone     string // only this zone, when not ""
	DryRun   bool
	Now      func() time.Time
}

// Run reads, for each zone's KSKs and CSKs whose DS the enforcer has
// submitted or retracted, the DS RRset from every parent server, and tells
// the enforcer what is true. It holds the writers' lock: two runs never
// record the same vanishing twice.
func Run(ctx context.Context, src Sources) (*Report, error) {
	if src.Now == nil {
		src.Now = func() time.Time { return time.Now().UTC() }
	}
	if len(src.Parent.Nameservers) == 0 {
		return nil, errors.New("parent sync needs [parent] nameservers: each of the parent's servers is asked directly (a resolver's cache cannot say that every server has a DS)")
	}
	zone := strings.TrimSuffix(strings.ToLower(src.Zone), ".")
	if !src.DryRun {
		unlock, err := src.Ledger.Lock(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	st, err := src.Source.State(ctx)
	if err != nil {
		return nil, err
	}
	book, err := src.Ledger.DS(ctx)
	if err != nil {
		return nil, err
	}
	if zone != "" && st.Zone(zone) == nil {
		return nil, fmt.Errorf("zone %q: not in the enforcer's database", zone)
	}
	// The keys the enforcer waits on, by zone.
	type cand struct {
		z *enforcer.Zone
		u *enforcer.Use
	}
	var cands []cand
	var zones []string
	for _, z := range st.Zones {
		if zone != "" && !strings.EqualFold(z.Name, zone) {
			continue
		}
		added := false
		for _, u := range z.Keys {
			if u.Role == enforcer.ZSK || (u.DSAtParent != enforcer.DSSubmitted && u.DSAtParent != enforcer.DSRetracted) {
				continue
			}
			cands = append(cands, cand{z, u})
			if !added {
				zones = append(zones, z.Name)
				added = true
			}
		}
	}
	rep := &Report{DryRun: src.DryRun, Items: []Item{}}
	if len(cands) == 0 {
		return rep, nil
	}
	// The public keys, from the tokens: a DS is a key's by its digest.
	var pubs map[string][]byte
	var tokens []hsmcheck.Token
	for _, t := range src.Tokens {
		if t.Kind != hsmcheck.KindBackupToken {
			tokens = append(tokens, t)
		}
	}
	var ids []string
	for _, c := range cands {
		ids = append(ids, strings.ToLower(c.u.Key.Locator))
	}
	if len(tokens) > 0 {
		pubs = hooks.PublicKeys(src.Source.Tokens(ctx, tokens, hsmcheck.Request{IDs: ids}))
	}
	answers := map[string][]parent.ServerAnswer{}
	for _, n := range zones {
		a, err := parent.EachServer(ctx, src.Parent, n)
		if err != nil {
			return nil, err
		}
		answers[strings.ToLower(n)] = a
	}
	now := src.Now()
	for _, c := range cands {
		r := book.Find(c.z.Name, c.u.Key.Locator, c.u.KeyTag, c.u.Key.Algorithm)
		pub := pubs[strings.ToLower(c.u.Key.Locator)]
		if len(pub) == 0 && r != nil && r.Line != "" {
			pub = hooks.ParseLine(r.Line).PublicKey
		}
		it := decide(c.z, c.u, r, book, answers[strings.ToLower(c.z.Name)], pub, now)
		act(ctx, src, &it, c.u, r, pub, now)
		rep.Items = append(rep.Items, it)
	}
	sort.SliceStable(rep.Items, func(i, j int) bool { return rep.Items[i].Zone < rep.Items[j].Zone })
	return rep, nil
}

// decide says what is true of one key's DS at the parent, and what the
// enforcer may be told. It reads nothing and changes nothing.
func decide(z *enforcer.Zone, u *enforcer.Use, r *ledger.DSKey, book *ledger.DSBook, answers []parent.ServerAnswer, pub []byte, now time.Time) Item {
	it := Item{Zone: z.Name, Role: u.Role.String(), KeyTag: u.KeyTag, Algorithm: u.Key.Algorithm, Locator: u.Key.Locator,
		EnforcerDS: u.DSAtParent.String(), Servers: []Server{}}
	var serving, notServing, unread, unsure []string
	for _, a := range answers {
		s := Server{Server: a.Server}
		if a.Err != nil {
			s.Error = a.Err.Error()
			unread = append(unread, a.Err.Error())
			it.Servers = append(it.Servers, s)
			continue
		}
		s.DS = []string{}
		serves, known := false, true
		for _, d := range a.DS {
			s.DS = append(s.DS, d.String())
			m, k := d.Match(z.Name, u.KeyTag, u.Key.Algorithm, pub)
			serves = serves || m
			if !k {
				known = false
			}
		}
		switch {
		case serves:
			s.Serves = &serves
			serving = append(serving, a.Server)
		case known:
			s.Serves = &serves
			notServing = append(notServing, a.Server)
		default:
			unsure = append(unsure, a.Server)
		}
		it.Servers = append(it.Servers, s)
	}
	if r != nil && !r.Vanished.IsZero() {
		v := r.Vanished
		it.Vanished = &v
	}
	switch {
	case len(answers) == 0:
		it.Action, it.Reason = ActUnknown, "no parent server was asked: nothing told"
		return it
	case len(unread) > 0:
		it.Action, it.Reason = ActUnknown, "not every parent server could be read, nothing told: "+strings.Join(unread, "; ")
		return it
	case len(unsure) > 0:
		it.Action, it.Reason = ActUnknown, fmt.Sprintf("%s serve a DS with its key tag, but whether it is this key's cannot be told: its public key is on no token read and in no record; nothing told",
			strings.Join(unsure, ", "))
		return it
	}
	if u.DSAtParent == enforcer.DSSubmitted {
		switch {
		case len(notServing) == 0:
			it.Action, it.Reason = ActSeen, fmt.Sprintf("every parent server serves its DS (%s)", strings.Join(serving, ", "))
		case len(serving) == 0:
			it.Action, it.Reason = ActWait, fmt.Sprintf("no parent server serves its DS yet (%s): no ds-seen", strings.Join(notServing, ", "))
		default:
			it.Action, it.Reason = ActWait, fmt.Sprintf("not every parent server serves its DS yet: %s does, %s does not: no ds-seen", strings.Join(serving, ", "), strings.Join(notServing, ", "))
		}
		return it
	}
	// Retracted: never while ods-keyguard keeps the retraction back.
	if e := book.PendingFor(ledger.Retract, r); r != nil && e != nil {
		it.Action = ActHeld
		it.Reason = fmt.Sprintf("ods-keyguard holds this retraction (%s since %s: %s): its DS stays at the parent and the enforcer is not told ds-gone",
			e.Action, e.Since.UTC().Format(time.RFC3339), e.Reason)
		if e.Locator != "" { // held for its successor (as hooks says it)
			it.Reason += "; " + hooks.HoldAdvice
		}
		return it
	}
	if len(serving) > 0 {
		it.Action = ActWait
		it.Reason = fmt.Sprintf("%s still serve its DS: no ds-gone", strings.Join(serving, ", "))
		if len(notServing) > 0 {
			it.Reason = fmt.Sprintf("%s still serve its DS (%s no longer): no ds-gone", strings.Join(serving, ", "), strings.Join(notServing, ", "))
		}
		return it
	}
	// The longer of the policy's DS TTL and the TTL the parent serves its
	// DS RRset with (the successor's DS is in the same RRset): what a
	// resolver that fetched the old DS may keep it for.
	ttl := z.Policy.ParentDSTTL
	for _, a := range answers {
		if a.TTL > ttl {
			ttl = a.TTL
		}
	}
	since := now
	if it.Vanished != nil {
		since = *it.Vanished
	}
	after := since.Add(ttl)
	it.GoneAfter = &after
	if now.Before(after) {
		it.Action = ActWait
		it.Reason = fmt.Sprintf("no parent server serves its DS since %s; resolvers may hold it until its TTL (%s) has passed: ds-gone from %s",
			since.UTC().Format(time.RFC3339), ttl, after.UTC().Format(time.RFC3339))
		return it
	}
	it.Action = ActGone
	it.Reason = fmt.Sprintf("no parent server serves its DS since %s, and its TTL (%s) has passed", since.UTC().Format(time.RFC3339), ttl)
	return it
}

// act records what was found, then tells the enforcer: record before
// acting. A dry run does neither.
func act(ctx context.Context, src Sources, it *Item, u *enforcer.Use, r *ledger.DSKey, pub []byte, now time.Time) {
	served := func() []string {
		var out []string
		for _, s := range it.Servers {
			switch {
			case s.DS == nil:
				out = append(out, s.Server+": not read")
			case len(s.DS) == 0:
				out = append(out, s.Server+": no DS")
			default:
				out = append(out, s.Server+": DS "+strings.Join(s.DS, ", "))
			}
		}
		return out
	}
	ev := func(kind, action, reason string) ledger.DSEvent {
		e := ledger.DSEvent{Kind: kind, Action: action, Zone: it.Zone, KeyTag: it.KeyTag, Algorithm: it.Algorithm,
			Locator: it.Locator, Reason: reason, By: "parent sync", Parent: served(), Time: now}
		if len(pub) > 0 {
			e.Fingerprint = hsmcheck.FingerprintDNSKEY(pub)
		}
		return e
	}
	what := fmt.Sprintf("zone %s %s %d (key %s)", it.Zone, it.Role, it.KeyTag, it.Locator)
	var evs []ledger.DSEvent
	var cmd string
	switch it.Action {
	case ActSeen:
		evs = append(evs, ev(ledger.Submit, ledger.Seen, it.Reason+": ods-enforcer key ds-seen"))
		cmd = "ds-seen"
	case ActGone:
		if it.Vanished == nil {
			evs = append(evs, ev(ledger.Retract, ledger.Vanished, "no parent server serves its DS any more"))
		}
		evs = append(evs, ev(ledger.Retract, ledger.Gone, it.Reason+": ods-enforcer key ds-gone"))
		cmd = "ds-gone"
	case ActWait:
		if u.DSAtParent != enforcer.DSRetracted {
			break
		}
		gone := it.GoneAfter != nil
		switch {
		case gone && it.Vanished == nil:
			evs = append(evs, ev(ledger.Retract, ledger.Vanished, "no parent server serves its DS any more: ds-gone once its TTL has passed"))
			v := now
			it.Vanished = &v
		case !gone && it.Vanished != nil:
			evs = append(evs, ev(ledger.Retract, ledger.Reappeared, it.Reason+": served again, its TTL starts over when it goes"))
			it.Vanished = nil
		}
	}
	if src.DryRun {
		if cmd != "" {
			it.Reason += " (dry run: would run ods-enforcer key " + cmd + ")"
		}
		return
	}
	if len(evs) > 0 {
		if err := src.Ledger.AddDS(ctx, evs...); err != nil {
			if cmd != "" {
				it.Action = ActFailed
				it.Reason = fmt.Sprintf("%s; not told: could not record it first: %v", it.Reason, err)
				src.Log.Err("parent sync: " + what + ": " + it.Reason)
			}
			return
		}
	}
	if cmd == "" {
		return
	}
	if err := tell(ctx, src.Enforcer, "key", cmd, "--zone", it.Zone, "--cka_id", it.Locator); err != nil {
		it.Action = ActFailed
		it.Reason = fmt.Sprintf("%s; ods-enforcer key %s failed: %v", it.Reason, cmd, err)
		src.Log.Err("parent sync: " + what + ": " + it.Reason)
		return
	}
	it.Told = true
	src.Log.Info(fmt.Sprintf("parent sync: %s: %s: told the enforcer %s", what, it.Reason, cmd))
}

// retryAfter is how long tell waits before its first retry; the n-th
// waits n times as long, up to maxRetries (10 s in all).
var retryAfter = time.Second

const maxRetries = 4

// tell runs `ods-enforcer key ds-seen|ds-gone ...`. When the enforcer
// answers that it changed no key ("0 KSKs changed") although its database
// showed the key waiting when this run read it, the command is tried again
// a second later, then two, three and four seconds later, within the
// run's deadline: ods-enforcerd 2.1 has been seen to answer so, now and
// then, for the second zone told in one run, while it ran the task the
// first command started, and on a loaded host for several seconds. The
// command changes nothing when the key is no longer waiting, so trying it
// again is safe; what is still refused is a failure the next run retries.
func tell(ctx context.Context, e Enforcer, args ...string) error {
	out, err := e.Run(ctx, args...)
	waited := time.Duration(0)
	for n := 1; err != nil && strings.Contains(out+err.Error(), "0 KSKs changed") && n <= maxRetries; n++ {
		wait := time.Duration(n) * retryAfter
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+retryAfter {
			break // no time left for the command after the wait
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		waited += wait
		if out, err = e.Run(ctx, args...); err == nil {
			return nil
		}
	}
	if err != nil && waited > 0 {
		return fmt.Errorf("%w (tried again for %s)", err, waited.Round(time.Second))
	}
	return err
}
