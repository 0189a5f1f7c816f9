package hooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// Guard is the DS guard: the hooks the enforcer runs, the release of what
// they kept back once a ceremony covers it, and what an operator drops on
// purpose. Every call to the outside runs within the context's deadline.
type Guard struct {
	Ledger *ledger.Ledger
	// Source reads the enforcer's database and the tokens.
	Source         inventory.Source
	Tokens         []hsmcheck.Token // every repository's token and mirror
	RequireBackup  map[string]bool
	SubmitForward  string // [hooks] ds_submit_forward
	RetractForward string // [hooks] ds_retract_forward
	Parent         parent.Config
	Log            Logger
	Stdout, Stderr io.Writer // the forward command's output
}

// Logger takes one line per event, by severity: what was forwarded (info),
// withheld or held (warning), and what could not be decided or recorded
// (err).
type Logger interface {
	Info(msg string)
	Warning(msg string)
	Err(msg string)
}

// Outcome is what one hook run did.
type Outcome struct {
	Nothing   bool // no DNSKEY on stdin
	Forwarded int
	Approved  int // covered, but kept back: no forward command is configured
	Withheld  int // submissions kept back
	Held      int // retractions kept back
	Skipped   int // retractions of a DS that never went to the parent
	Rejected  int // lines that are no DNSKEY
	// ForwardErr is the forward command's failure; an *exec.ExitError when
	// it ran and exited non-zero.
	ForwardErr error
	// RecordErr is what could not be recorded. check still sees it: the
	// enforcer has the DS submitted and the records know nothing of it.
	RecordErr error
}

// ExitStatus is the hook's exit status: the forward command's when it
// failed with one; 1 when anything was withheld, held, kept back for want
// of a forward command, or rejected, when there was no DNSKEY, or a
// forward or a record failed; else 0.
func (o Outcome) ExitStatus() int {
	var ee *exec.ExitError
	switch {
	case errors.As(o.ForwardErr, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	case o.Nothing || o.Withheld+o.Held+o.Approved+o.Rejected > 0 || o.ForwardErr != nil || o.RecordErr != nil:
		return 1
	}
	return 0
}

// recordTimeout bounds the writing of records, which happens even when the
// hook's deadline has passed: a record is what keeps nothing from being lost.
const recordTimeout = 3 * time.Second

// Submit is the ds-submit hook: each DNSKEY on in is forwarded when its key
// is backed up, and withheld (recorded, logged) otherwise.
func (g *Guard) Submit(ctx context.Context, in io.Reader) Outcome {
	return g.run(ctx, ledger.Submit, in)
}

// Retract is the ds-retract hook: each retraction is forwarded, unless the
// successor's DS is not at the parent yet (held until it is), or the DS
// never went to the parent (skipped).
func (g *Guard) Retract(ctx context.Context, in io.Reader) Outcome {
	return g.run(ctx, ledger.Retract, in)
}

// parseWithin is parse bounded by ctx: a writer that never closes stdin
// cannot hold the hook past its deadline. (The enforcer closes it; a
// wrapper script might not.)
func parseWithin(ctx context.Context, in io.Reader) ([]Submission, error) {
	type parsed struct {
		subs []Submission
		err  error
	}
	done := make(chan parsed, 1)
	go func() {
		subs, err := parse(in)
		done <- parsed{subs, err}
	}()
	select {
	case p := <-done:
		return p.subs, p.err
	case <-ctx.Done():
		return nil, fmt.Errorf("stdin was not closed in time (%v): nothing was decided or forwarded", context.Cause(ctx))
	}
}

func (g *Guard) run(ctx context.Context, kind string, in io.Reader) Outcome {
	var out Outcome
	subs, err := parseWithin(ctx, in)
	if err != nil {
		g.Log.Err(fmt.Sprintf("%s: %v", kind, err))
		out.Nothing = true
		return out
	}
	var good, bad []Submission
	for _, s := range subs {
		if s.Err != "" {
			bad = append(bad, s)
		} else {
			good = append(good, s)
		}
	}
	if len(subs) == 0 {
		g.Log.Warning(kind + ": no DNSKEY on stdin: nothing to do")
		out.Nothing = true
		return out
	}
	if len(bad) > 0 {
		out.Rejected = len(bad)
		reason := bad[0].Err
		if len(bad) > 1 {
			reason = fmt.Sprintf("%s (and %s no DNSKEY)", reason, human.Count(len(bad)-1, "more line that is", "more lines that are"))
		}
		g.Log.Err(fmt.Sprintf("%s: rejected %s: %s", kind, bad[0].Describe(), reason))
		g.record(ctx, &out, kind, ledger.DSEvent{Kind: kind, Action: ledger.Rejected, Line: ledger.QuoteInput([]byte(bad[0].Line)),
			Reason: reason, By: "hook"})
	}
	if len(good) == 0 {
		return out
	}
	// The facts within 60% of the time left: the rest is for recording and
	// forwarding.
	fctx, cancel := share(ctx, 0.6)
	zones := map[string]bool{}
	for _, s := range good {
		zones[strings.ToLower(s.Zone)] = true
	}
	// A submission is decided without the parent: only a retraction asks
	// whether a successor's DS is there, and one held behind a submission
	// forwarded now follows on the records' word (hook release asks).
	f := g.gather(fctx, good, nil, kind == ledger.Retract, func(st *enforcer.State, b *ledger.DSBook) []*enforcer.Key {
		return successorKeys(st, b, zones)
	})
	cancel()
	g.baseline(ctx, &out, kind, f, good)
	if kind == ledger.Submit {
		g.submit(ctx, &out, f, good)
	} else {
		g.retract(ctx, &out, f, good)
	}
	return out
}

// share returns a context whose deadline is part of what is left of ctx's.
func share(ctx context.Context, part float64) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Duration(float64(time.Until(d))*part)))
}

func event(s Submission, kind, action, reason, locator string) ledger.DSEvent {
	return ledger.DSEvent{Kind: kind, Action: action, Zone: s.Zone, KeyTag: s.KeyTag, Algorithm: s.Algorithm,
		Locator: locator, Fingerprint: s.Fingerprint, Line: s.Line, Reason: reason, By: "hook"}
}

func (g *Guard) record(ctx context.Context, out *Outcome, kind string, evs ...ledger.DSEvent) {
	if len(evs) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := g.Ledger.AddDS(rctx, evs...); err != nil {
		out.RecordErr = errors.Join(out.RecordErr, err)
		g.Log.Err(fmt.Sprintf("%s: could not record what was decided (check still sees it, from the enforcer's database): %v", kind, err))
	}
}

func (g *Guard) submit(ctx context.Context, out *Outcome, f facts, subs []Submission) {
	var pass []Submission
	var evs []ledger.DSEvent
	for _, s := range subs {
		d := decide(s, f)
		if d.Forward {
			pass = append(pass, s)
			g.Log.Info(fmt.Sprintf("ds-submit: %s (key %s): backed up in ceremony %s (%s), on every token: forwarding", s.Describe(), d.Locator, d.Ceremony, d.Backup))
			continue
		}
		out.Withheld++
		g.Log.Warning(fmt.Sprintf("ds-submit: withheld %s: %s", s.Describe(), d.Reason))
		evs = append(evs, event(s, ledger.Submit, ledger.Withheld, d.Reason, d.Locator))
	}
	// A retraction held for a successor that is withheld now says why.
	if len(evs) > 0 && f.Book != nil {
		for _, e := range f.Book.Pending {
			if e.Kind != ledger.Retract || e.Action != ledger.Held {
				continue
			}
			for _, w := range evs {
				if strings.EqualFold(w.Zone, e.Zone) {
					why := fmt.Sprintf("its successor's DS is not at the parent yet: key tag %d (withheld: %s)", w.KeyTag, w.Reason)
					evs = append(evs, ledger.DSEvent{Kind: ledger.Retract, Action: ledger.Held, Zone: e.Zone, KeyTag: e.KeyTag,
						Algorithm: e.Algorithm, Locator: e.Locator, Fingerprint: e.Fingerprint, Line: e.Line, Reason: why, By: "hook"})
					break
				}
			}
		}
	}
	// Record before acting: what is withheld is on record before anything
	// else happens.
	g.record(ctx, out, ledger.Submit, evs...)
	locators := map[string]string{}
	for _, s := range pass {
		if u, _ := find(s, f); u != nil {
			locators[s.Fingerprint] = u.Key.Locator
		}
	}
	g.send(ctx, out, ledger.Submit, g.SubmitForward, pass, locators, g.Stdout)
	if out.Forwarded > 0 {
		g.follow(ctx, out, f, pass)
	}
}

// follow forwards, right after a successor's DS, the retractions that were
// held for it: in a rollover the enforcer can ask to retract the old DS
// before it asks to submit the new one.
func (g *Guard) follow(ctx context.Context, out *Outcome, f facts, forwarded []Submission) {
	zones := map[string]bool{}
	for _, s := range forwarded {
		zones[s.Zone] = true
	}
	book, err := g.Ledger.DS(ctx)
	if err != nil {
		g.Log.Err(fmt.Sprintf("ds-submit: cannot read the DS records to release what was held for this DS: %v (hook release does)", err))
		return
	}
	f.Book = book
	var pass []Submission
	locators := map[string]string{}
	for _, e := range book.Pending {
		if e.Kind != ledger.Retract || !zones[e.Zone] {
			continue
		}
		s := ParseLine(e.Line)
		s.CKAID = e.Locator
		if s.Err != "" || decideRetract(s, f).Action != ledger.Forwarded {
			continue
		}
		g.Log.Info(fmt.Sprintf("ds-retract: %s, held for its successor, goes right after it", s.Describe()))
		pass = append(pass, s)
		locators[s.Fingerprint] = e.Locator
	}
	var o Outcome
	g.send(ctx, &o, ledger.Retract, g.RetractForward, pass, locators, g.Stdout)
	out.RecordErr = joinErr(out.RecordErr, o.RecordErr)
	if o.ForwardErr != nil {
		g.Log.Warning(fmt.Sprintf("ds-retract: the held retractions stay held: %v (hook release tries again)", o.ForwardErr))
	}
}

// NoForward is why an approved request is kept back when [hooks] has no
// forward command for it: nothing reaches the parent, the enforcer
// believes it did, and check warns until it is sent or dropped.
func NoForward(kind string) string {
	return fmt.Sprintf("approved, but kept back: no forward command is configured ([hooks] ds_%s_forward), so nothing goes to the parent: set it and run ods-keyguard hook release, or do it by hand and run ods-keyguard hook drop",
		strings.TrimPrefix(kind, "ds-"))
}

// send forwards subs as one call of command, recorded before and after.
func (g *Guard) send(ctx context.Context, out *Outcome, kind, command string, subs []Submission, locators map[string]string, stdout io.Writer) {
	if len(subs) == 0 {
		return
	}
	if command == "" {
		var evs []ledger.DSEvent
		for _, s := range subs {
			why := NoForward(kind)
			g.Log.Warning(fmt.Sprintf("%s: %s: %s", kind, s.Describe(), why))
			action := ledger.Withheld
			if kind == ledger.Retract {
				action = ledger.Held
			}
			evs = append(evs, event(s, kind, action, why, locators[s.Fingerprint]))
		}
		out.Approved += len(subs)
		g.record(ctx, out, kind, evs...)
		return
	}
	var before []ledger.DSEvent
	for _, s := range subs {
		before = append(before, event(s, kind, ledger.Forwarding, "", locators[s.Fingerprint]))
	}
	g.record(ctx, out, kind, before...)
	err := g.forward(ctx, command, subs, stdout)
	var after []ledger.DSEvent
	for _, s := range subs {
		if err != nil {
			why := "forward command failed: " + err.Error()
			g.Log.Warning(fmt.Sprintf("%s: %s: %s", kind, s.Describe(), why))
			after = append(after, event(s, kind, ledger.Failed, why, locators[s.Fingerprint]))
		} else {
			if kind == ledger.Retract {
				g.Log.Info(fmt.Sprintf("%s: %s: forwarded", kind, s.Describe()))
			}
			after = append(after, event(s, kind, ledger.Forwarded, "", locators[s.Fingerprint]))
		}
	}
	g.record(ctx, out, kind, after...)
	if err != nil {
		out.ForwardErr = err
		if kind == ledger.Submit {
			out.Withheld += len(subs)
		} else {
			out.Held += len(subs)
		}
		return
	}
	out.Forwarded += len(subs)
}

func (g *Guard) retract(ctx context.Context, out *Outcome, f facts, subs []Submission) {
	var pass []Submission
	var evs []ledger.DSEvent
	locators := map[string]string{}
	for _, s := range subs {
		d := decideRetract(s, f)
		locators[s.Fingerprint] = d.Locator
		switch d.Action {
		case ledger.Rejected:
			out.Rejected++
			g.Log.Err(fmt.Sprintf("ds-retract: rejected %s: %s", s.Describe(), d.Reason))
			ev := event(s, ledger.Retract, ledger.Rejected, d.Reason, d.Locator)
			ev.Line = ledger.QuoteInput([]byte(strings.TrimSpace(s.Line)))
			evs = append(evs, ev)
		case ledger.Held:
			out.Held++
			g.Log.Warning(fmt.Sprintf("ds-retract: held %s by ods-keyguard: %s", s.Describe(), heldReason(d.Reason, d.Locator)))
			evs = append(evs, event(s, ledger.Retract, ledger.Held, d.Reason, d.Locator))
		case ledger.Skipped:
			out.Skipped++
			g.Log.Info(fmt.Sprintf("ds-retract: %s: not forwarded: %s", s.Describe(), d.Reason))
			evs = append(evs, event(s, ledger.Retract, ledger.Skipped, d.Reason, d.Locator))
			evs = append(evs, dropSubmission(f.Book, s, d.Locator)...)
		default:
			pass = append(pass, s)
			evs = append(evs, dropSubmission(f.Book, s, d.Locator)...)
		}
	}
	g.record(ctx, out, ledger.Retract, evs...)
	g.send(ctx, out, ledger.Retract, g.RetractForward, pass, locators, g.Stdout)
}

// dropSubmission settles a withheld submission of a key the enforcer now
// retracts: released later, it would put back a DS that nobody will ever
// retract.
func dropSubmission(b *ledger.DSBook, s Submission, locator string) []ledger.DSEvent {
	if b == nil {
		return nil
	}
	e := b.Entry(ledger.EntryID(ledger.Submit, s.Zone, s.Fingerprint))
	if e == nil {
		return nil
	}
	ev := event(s, ledger.Submit, ledger.Dropped, "the enforcer retracted the key before its DS went to the parent", locator)
	ev.Line = e.Line
	return []ledger.DSEvent{ev}
}

// forward runs command with the lines on its stdin, exactly as received, in
// a process group that the deadline kills.
func (g *Guard) forward(ctx context.Context, command string, subs []Submission, stdout io.Writer) error {
	var in bytes.Buffer
	for _, s := range subs {
		in.WriteString(s.Line)
	}
	cmd := proc.Command(ctx, "/bin/sh", "-c", command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &in, stdout, g.Stderr
	err := proc.Run(ctx, cmd)
	if ctx.Err() != nil {
		return fmt.Errorf("did not finish in time, killed (%w)", ctx.Err())
	}
	return err
}

// gather reads what decisions need, once: the DS records (book, when the
// caller read them already), the database, the ceremonies and the candidate
// keys on the tokens (only those), plus, with askParent and [parent]
// configured, the parent's DS, asked at once beside the rest. extra names
// more keys to read on the tokens, once the database is read.
func (g *Guard) gather(ctx context.Context, subs []Submission, book *ledger.DSBook, askParent bool, extra func(*enforcer.State, *ledger.DSBook) []*enforcer.Key) facts {
	done := make(chan map[string]parent.Answer, 1)
	go func() {
		if !askParent {
			done <- nil
			return
		}
		seen := map[string]bool{}
		var zones []string
		for _, s := range subs {
			if !seen[s.Zone] {
				seen[s.Zone] = true
				zones = append(zones, s.Zone)
			}
		}
		done <- parent.ByZone(ctx, g.Parent, zones)
	}()
	f := facts{RequireBackup: g.RequireBackup, Tokens: map[string][]tokenView{}}
	if f.Book = book; book == nil {
		f.Book, f.BookErr = g.Ledger.DS(ctx)
	}
	if store, err := g.Ledger.Ceremonies(ctx); err != nil {
		f.CeremoniesErr = err
	} else {
		f.Coverage = store.Coverage()
	}
	st, err := g.Source.State(ctx)
	if err != nil {
		f.StateErr = err
	} else {
		f.State = st
	}
	if f.State != nil {
		var more []*enforcer.Key
		if extra != nil {
			more = extra(f.State, f.Book)
		}
		g.readTokens(ctx, &f, subs, more)
	}
	f.Parent = <-done
	return f
}

func (g *Guard) readTokens(ctx context.Context, f *facts, subs []Submission, extra []*enforcer.Key) {
	ids := map[string]bool{}
	repos := map[string]bool{}
	for _, s := range subs {
		for _, k := range candidates(s, f.State) {
			ids[k.Locator] = true
			repos[k.Repository] = true
		}
	}
	for _, k := range extra {
		ids[k.Locator] = true
		repos[k.Repository] = true
	}
	if len(ids) == 0 {
		return
	}
	var tokens []hsmcheck.Token
	for _, t := range g.Tokens {
		if repos[t.Repository] && t.Kind != hsmcheck.KindBackupToken {
			tokens = append(tokens, t)
		}
	}
	for _, res := range g.Source.Tokens(ctx, tokens, hsmcheck.Request{IDs: slices.Sorted(maps.Keys(ids))}) {
		v := tokenView{Name: res.Token.Describe(), Err: res.Err}
		if res.Contents != nil {
			v.Keys = res.Contents
		}
		f.Tokens[res.Token.Repository] = append(f.Tokens[res.Token.Repository], v)
	}
}

// baseline starts the DS records the first time a hook runs (the records
// begin with the hooks: without them nothing is forwarded through
// ods-keyguard): every KSK and CSK whose DS the enforcer already has at the
// parent was put there before, and is adopted as such.
func (g *Guard) baseline(ctx context.Context, out *Outcome, kind string, f facts, now []Submission) {
	if f.Book == nil || !f.Book.Created.IsZero() || f.State == nil {
		return
	}
	current := map[string]bool{}
	for _, s := range now {
		if u, _ := find(s, f); u != nil {
			current[u.Key.Locator] = true
		}
	}
	var evs []ledger.DSEvent
	for _, z := range f.State.Zones {
		for _, u := range z.Keys {
			if u.Role == enforcer.ZSK || current[u.Key.Locator] || f.Book.Find(z.Name, u.Key.Locator, u.KeyTag, u.Key.Algorithm) != nil {
				continue
			}
			if u.DSAtParent == enforcer.DSSubmitted || u.DSAtParent == enforcer.DSSeen {
				evs = append(evs, ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Adopted, Zone: z.Name, KeyTag: u.KeyTag,
					Algorithm: u.Key.Algorithm, Locator: u.Key.Locator, By: kind,
					Reason: fmt.Sprintf("the enforcer had its DS %s before ods-keyguard recorded DS submissions", u.DSAtParent)})
			}
		}
	}
	evs = append(evs, ledger.DSEvent{Action: ledger.Created, By: kind, Reason: createdReason(len(evs))})
	g.record(ctx, out, kind, evs...)
}

// dnskeyLine rebuilds the enforcer's DNSKEY line of a key from its public
// key on a token: what release forwards for a submission that was never
// recorded (the hook could not write).
func dnskeyLine(zone string, ttl time.Duration, algorithm int, pub []byte) string {
	return fmt.Sprintf("%s. %d IN DNSKEY 257 3 %d %s \n", strings.TrimSuffix(zone, "."), int(ttl.Seconds()), algorithm,
		base64.StdEncoding.EncodeToString(pub))
}
