package hooks

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Released is one line of a release's report.
type Released struct {
	Action  string `json:"action"` // forwarded, dropped, or kept (still withheld or held)
	Kind    string `json:"kind"`
	Zone    string `json:"zone"`
	KeyTag  int    `json:"keytag"`
	Locator string `json:"locator,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Release report actions.
const (
	ReleaseForwarded = "forwarded"
	ReleaseDropped   = "dropped"
	ReleaseKept      = "kept"
)

func (r Released) String() string {
	what := fmt.Sprintf("%s zone %s key tag %d", r.Kind, r.Zone, r.KeyTag)
	switch r.Action {
	case ReleaseForwarded:
		return "released: " + what
	case ReleaseDropped:
		return fmt.Sprintf("dropped: %s: %s", what, r.Reason)
	}
	verb := "still withheld"
	if r.Kind == ledger.Retract {
		verb = "still held"
	}
	return fmt.Sprintf("%s: %s: %s", verb, what, r.Reason)
}

// ReleaseReport is what a release did, in order.
type ReleaseReport struct {
	Items []Released `json:"items"`
	Left  int        `json:"left"` // still kept back
}

// Release decides again, under the lock, everything the hooks kept back
// and forwards what may go now: first the submissions whose keys a
// ceremony covers, then the retractions whose successors' DS are at the
// parent now, in that order. What the enforcer no longer wants (a key it
// retracted, purged or marked gone) is dropped with the reason, never sent.
// A submission the enforcer made that has no record at all (the hook could
// not write) is rebuilt from the key on the token and decided like the
// others.
func (g *Guard) Release(ctx context.Context, out io.Writer) (*ReleaseReport, error) {
	unlock, err := g.Ledger.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return g.ReleaseLocked(ctx, out)
}

// ReleaseLocked is Release for a caller that holds the lock already: backup
// done, right after it confirmed a ceremony.
func (g *Guard) ReleaseLocked(ctx context.Context, out io.Writer) (*ReleaseReport, error) {
	// One line per action: printed on out, it goes to syslog only.
	if q, ok := g.Log.(interface{ SyslogOnly() Logger }); ok && out != nil {
		log := g.Log
		g.Log = q.SyslogOnly()
		defer func() { g.Log = log }()
	}
	book, err := g.Ledger.DS(ctx)
	if err != nil {
		return nil, err
	}
	rep := &ReleaseReport{Items: []Released{}}
	var o Outcome
	say := func(r Released) {
		rep.Items = append(rep.Items, r)
		if out != nil {
			fmt.Fprintln(out, r.String())
		}
	}
	var subs []Submission
	for _, e := range book.Pending {
		if s := ParseLine(e.Line); s.Err == "" {
			s.CKAID = e.Locator
			subs = append(subs, s)
		}
	}
	var derived []*enforcer.Key
	f := g.gather(ctx, subs, book, true, func(st *enforcer.State, b *ledger.DSBook) []*enforcer.Key {
		derived = unrecorded(st, b)
		zones := map[string]bool{}
		for _, e := range b.Pending {
			if e.Kind == ledger.Retract {
				zones[strings.ToLower(e.Zone)] = true
			}
		}
		return append(append([]*enforcer.Key(nil), derived...), successorKeys(st, b, zones)...)
	})
	g.releaseSubmissions(ctx, &o, f, book, derived, say)
	// The retractions see what was just forwarded.
	if book, err = g.Ledger.DS(ctx); err != nil {
		return rep, err
	}
	f.Book = book
	g.releaseRetractions(ctx, &o, f, say)
	if err := g.Ledger.CompactDS(ctx); err != nil {
		return rep, err
	}
	if o.RecordErr != nil {
		return rep, o.RecordErr
	}
	for _, r := range rep.Items {
		if r.Action == ReleaseKept {
			rep.Left++
		}
	}
	return rep, nil
}

func (g *Guard) releaseSubmissions(ctx context.Context, o *Outcome, f facts, book *ledger.DSBook, derived []*enforcer.Key, say func(Released)) {
	var evs []ledger.DSEvent
	// send records what was decided so far, then forwards s.
	send := func(item Released, s Submission, locator, note string) {
		g.record(ctx, o, "release", evs...)
		evs = nil
		if r := g.releaseOne(ctx, o, ledger.Submit, g.SubmitForward, s, locator); r != "" {
			item.Action, item.Reason = ReleaseKept, r
		} else {
			item.Action = ReleaseForwarded
			g.Log.Info(fmt.Sprintf("ds-submit: released %s%s: forwarded", s.Describe(), note))
		}
		say(item)
	}
	for _, p := range pendingOf(book, ledger.Submit, &evs, say) {
		e, s, item := p.e, p.s, p.item
		if why := unwanted(f, s); why != "" {
			item.Action, item.Reason = ReleaseDropped, why
			evs = append(evs, dropped(e, why))
			say(item)
			continue
		}
		d := decide(s, f)
		if d.Locator != "" {
			item.Locator = d.Locator
		}
		if !d.Forward {
			item.Action, item.Reason = ReleaseKept, d.Reason
			if d.Reason != e.Reason {
				evs = append(evs, event(s, ledger.Submit, ledger.Withheld, d.Reason, d.Locator))
			}
			say(item)
			continue
		}
		send(item, s, d.Locator, "")
	}
	for _, k := range derived {
		for _, u := range k.Uses {
			if u.Role == enforcer.ZSK || (u.DSAtParent != enforcer.DSSubmitted && u.DSAtParent != enforcer.DSSeen) {
				continue
			}
			if r := book.Find(u.Zone.Name, k.Locator, u.KeyTag, k.Algorithm); r != nil && (r.AtParent() || !r.InFlight.IsZero()) {
				continue
			}
			item := Released{Kind: ledger.Submit, Zone: u.Zone.Name, KeyTag: u.KeyTag, Locator: k.Locator}
			pub := publicKey(f, k)
			if pub == nil {
				item.Action, item.Reason = ReleaseKept, "no record of it being forwarded, and its public key cannot be read from a token to send it"
				say(item)
				continue
			}
			ttl := u.Zone.Policy.KeyTTL
			s := ParseLine(dnskeyLine(u.Zone.Name, ttl, k.Algorithm, pub))
			s.CKAID = k.Locator
			d := decide(s, f)
			if !d.Forward {
				why := "no record of it being forwarded (the hook could not record?); " + d.Reason
				item.Action, item.Reason = ReleaseKept, why
				evs = append(evs, event(s, ledger.Submit, ledger.Withheld, why, k.Locator))
				say(item)
				continue
			}
			send(item, s, k.Locator, " (no record of it being forwarded before)")
		}
	}
	g.record(ctx, o, "release", evs...)
}

// noInfo drops the info lines of a logger: a forward's "forwarded", which
// release logs itself as "released".
type noInfo struct{ Logger }

func (noInfo) Info(string) {}

// releaseOne forwards one request; the reason it is still kept back when
// that fails.
func (g *Guard) releaseOne(ctx context.Context, o *Outcome, kind, command string, s Submission, locator string) string {
	var one Outcome
	// The caller logs what became of it, once: "released ...: forwarded".
	log := g.Log
	g.Log = noInfo{log}
	g.send(ctx, &one, kind, command, []Submission{s}, map[string]string{s.Fingerprint: locator}, io.Discard)
	g.Log = log
	o.RecordErr = joinErr(o.RecordErr, one.RecordErr)
	switch {
	case one.Approved > 0:
		return NoForward(kind)
	case one.ForwardErr != nil:
		return "forward command failed: " + one.ForwardErr.Error()
	}
	return ""
}

func (g *Guard) releaseRetractions(ctx context.Context, o *Outcome, f facts, say func(Released)) {
	var evs []ledger.DSEvent
	for _, p := range pendingOf(f.Book, ledger.Retract, &evs, say) {
		e, s, item := p.e, p.s, p.item
		if k := f.Book.Find(e.Zone, e.Locator, e.KeyTag, e.Algorithm); k != nil && k.NeverForwarded() {
			item.Action, item.Reason = ReleaseDropped, "its DS never went to the parent: nothing to retract"
			evs = append(evs, dropped(e, item.Reason))
			say(item)
			continue
		}
		d := decideRetract(s, f)
		switch d.Action {
		case ledger.Rejected:
			item.Action, item.Reason = ReleaseDropped, d.Reason
			evs = append(evs, dropped(e, d.Reason))
			g.Log.Err(fmt.Sprintf("ds-retract: dropped %s: %s", s.Describe(), d.Reason))
		case ledger.Skipped:
			item.Action, item.Reason = ReleaseDropped, d.Reason
			evs = append(evs, dropped(e, d.Reason))
		case ledger.Held:
			item.Action, item.Reason = ReleaseKept, d.Reason
			if d.Reason != e.Reason {
				evs = append(evs, event(s, ledger.Retract, ledger.Held, d.Reason, e.Locator))
			}
		default:
			g.record(ctx, o, "release", evs...)
			evs = nil
			if r := g.releaseOne(ctx, o, ledger.Retract, g.RetractForward, s, e.Locator); r != "" {
				item.Action, item.Reason = ReleaseKept, r
			} else {
				item.Action = ReleaseForwarded
				g.Log.Info(fmt.Sprintf("ds-retract: released %s: forwarded", s.Describe()))
			}
		}
		say(item)
	}
	g.record(ctx, o, "release", evs...)
}

// pendingEntry is a kept-back entry to decide again, its line parsed.
type pendingEntry struct {
	e    *ledger.DSEntry
	s    Submission
	item Released
}

// pendingOf lists book's kept-back entries of kind. One whose line is no
// DNSKEY is dropped instead (recorded in evs, and said).
func pendingOf(book *ledger.DSBook, kind string, evs *[]ledger.DSEvent, say func(Released)) []pendingEntry {
	var out []pendingEntry
	for _, e := range book.Pending {
		if e.Kind != kind {
			continue
		}
		s := ParseLine(e.Line)
		s.CKAID = e.Locator
		item := Released{Kind: e.Kind, Zone: e.Zone, KeyTag: e.KeyTag, Locator: e.Locator}
		if s.Err != "" {
			item.Action, item.Reason = ReleaseDropped, "its line is no DNSKEY: "+s.Err
			*evs = append(*evs, dropped(e, item.Reason))
			say(item)
			continue
		}
		out = append(out, pendingEntry{e, s, item})
	}
	return out
}

func dropped(e *ledger.DSEntry, why string) ledger.DSEvent {
	return ledger.DSEvent{Kind: e.Kind, Action: ledger.Dropped, Zone: e.Zone, KeyTag: e.KeyTag, Algorithm: e.Algorithm,
		Locator: e.Locator, Fingerprint: e.Fingerprint, Reason: why, By: "release"}
}

// unwanted says why the enforcer no longer wants s's DS at the parent, or
// "" when it does (or cannot be asked).
func unwanted(f facts, s Submission) string {
	if f.State == nil {
		return ""
	}
	u, _ := find(s, f)
	if u == nil {
		return fmt.Sprintf("the enforcer no longer has this key for zone %s (purged, or the zone removed)", s.Zone)
	}
	switch u.DSAtParent {
	case enforcer.DSSubmit, enforcer.DSSubmitted, enforcer.DSSeen:
		return ""
	case enforcer.DSRetract, enforcer.DSRetracted:
		return fmt.Sprintf("the enforcer has retracted it (DS %s)", u.DSAtParent)
	}
	return fmt.Sprintf("the enforcer no longer wants its DS at the parent (DS %s)", u.DSAtParent)
}

// unrecorded lists the keys whose DS the enforcer has at the parent
// (submitted or seen) while the records, once begun, know nothing of it:
// the hook could not record, or did not run.
func unrecorded(st *enforcer.State, b *ledger.DSBook) []*enforcer.Key {
	if st == nil || b == nil || b.Created.IsZero() {
		return nil
	}
	var out []*enforcer.Key
	seen := map[*enforcer.Key]bool{}
	for _, z := range st.Zones {
		for _, u := range z.Keys {
			if u.Role == enforcer.ZSK || (u.DSAtParent != enforcer.DSSubmitted && u.DSAtParent != enforcer.DSSeen) || seen[u.Key] {
				continue
			}
			k := b.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm)
			if k == nil || (!k.AtParent() && k.InFlight.IsZero() && b.PendingFor(ledger.Submit, k) == nil) {
				seen[u.Key] = true
				out = append(out, u.Key)
			}
		}
	}
	return out
}

// publicKey is k's public key from the first token that has it.
func publicKey(f facts, k *enforcer.Key) []byte {
	for _, t := range f.Tokens[k.Repository] {
		if t.Keys == nil {
			continue
		}
		if hk, n := t.Keys.Find(k.Locator); n > 0 && len(hk.PublicKey) > 0 {
			return hk.PublicKey
		}
	}
	return nil
}

func joinErr(a, b error) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}

// lockedBook takes the writers' lock and reads the DS records under it;
// unlock lets the lock go.
func (g *Guard) lockedBook(ctx context.Context) (book *ledger.DSBook, unlock func(), err error) {
	if unlock, err = g.Ledger.Lock(ctx); err != nil {
		return nil, nil, err
	}
	if book, err = g.Ledger.DS(ctx); err != nil {
		unlock()
		return nil, nil, err
	}
	return book, unlock, nil
}

// Drop settles a pending entry on purpose, recorded with who and why: a
// withheld submission the operator sent by hand, say.
func (g *Guard) Drop(ctx context.Context, id, reason, operator string) (*ledger.DSEntry, error) {
	book, unlock, err := g.lockedBook(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e := book.Entry(id)
	if e == nil {
		return nil, fmt.Errorf("no pending entry %q (ods-keyguard hook pending lists them)", id)
	}
	ev := dropped(e, fmt.Sprintf("dropped by %s: %s", operator, reason))
	ev.By = operator
	if err := g.Ledger.AddDS(ctx, ev); err != nil {
		return nil, err
	}
	g.Log.Warning(fmt.Sprintf("%s: dropped zone %s key tag %d on purpose by %s: %s", e.Kind, e.Zone, e.KeyTag, operator, reason))
	return e, g.Ledger.CompactDS(ctx)
}
