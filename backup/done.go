package backup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Done confirms the open ceremony of each of repos (every repository with
// one when repos is empty): the procedure's step 7. It commits nothing when
// a manifest key is no longer on a token or mirror, when the enforcer's
// Prepared set is no longer the manifest's, or when the named backup token
// lacks a manifest key or holds another key pair under its CKA_ID. It
// verifies on the backup token every key still needed, and warns about
// older keys the token lacks. Once a ceremony is confirmed (or found
// confirmed by a run that died), e.Release runs.
func Done(ctx context.Context, e *Env, repos []string, backupToken, operator string) (confirmed []*ledger.Ceremony, err error) {
	unlock, store, seen, err := e.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer func() {
		if len(confirmed) > 0 && e.Release != nil {
			if rerr := e.Release(ctx); rerr != nil {
				err = errors.Join(err, &Warning{fmt.Sprintf("the ceremony is confirmed, but the hook release failed (run ods-keyguard hook release): %v", rerr)})
			}
		}
	}()
	if len(repos) == 0 {
		repos = store.OpenRepositories()
		if len(repos) == 0 {
			return nil, refuse("nothing to do: no backup ceremony is open (run `ods-keyguard backup prepare` before backing up the HSM)")
		}
	}
	var todo []*ledger.Ceremony
	for _, repo := range repos {
		c := store.Open(repo)
		if id := seen[repo]; id != "" && (c == nil || c.ID != id) && store.Recorded(id) != nil {
			// Ended while this run waited for the lock.
			rec, err := e.conflict(ctx, &store, repo, id, "committed")
			if err != nil {
				return confirmed, err
			}
			confirmed = append(confirmed, rec)
			continue
		}
		switch {
		case c != nil && store.Live(c) && c.Status != ledger.Open:
			// Another host acts on it now: wait for a commit to end, or say
			// what it does.
			rec, err := e.conflict(ctx, &store, repo, c.ID, "committed")
			switch {
			case err != nil:
				return confirmed, err
			case rec != nil:
				confirmed = append(confirmed, rec)
			case store.Open(repo) != nil:
				todo = append(todo, store.Open(repo))
			}
			continue
		case c != nil && c.Status == ledger.RollingBack:
			return nil, refuse("repository %q: ceremony %s was interrupted while rolling back, nothing committed: run `backup rollback` again to finish it", repo, c.ID)
		case c == nil:
			last := "none yet"
			if lc := store.LastConfirmed(repo); lc != nil {
				last = fmt.Sprintf("%s, %s", lc.ID, lc.Ended.Format(human.Display))
			}
			return nil, refuse("nothing to do: no backup ceremony is open for repository %q (last confirmed: %s)", repo, last)
		case c.Status == ledger.Preparing:
			return nil, refuse("repository %q: ceremony %s was interrupted while preparing, nothing committed: run `backup prepare` again (it takes it up) or `backup rollback`", repo, c.ID)
		case store.Recorded(c.ID) != nil:
			// Interrupted between the history and the open list: finish.
			if err := store.Forget(ctx, repo); err != nil {
				return nil, err
			}
			e.say("repository %q: ceremony %s was already confirmed (in the history); its open record is cleared", repo, c.ID)
			confirmed = append(confirmed, store.Recorded(c.ID))
		default:
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return confirmed, nil
	}
	var extra []hsmcheck.Token
	if backupToken != "" {
		t, err := e.BackupToken(backupToken)
		if err != nil {
			return confirmed, err
		}
		// Configured as a token the keys live on, it would hold every
		// key of every ceremony and verify nothing.
		for _, live := range e.Tokens {
			if hsmcheck.SameToken(t, live) {
				return confirmed, refuse("%s: the same token as %s (same module, label and environment): it holds no backup; point its env at the backup medium's own configuration",
					t.Describe(), live.Describe())
			}
		}
		extra = append(extra, t)
	}
	var names []string
	for _, c := range todo {
		names = append(names, c.Repository)
	}
	snap, err := e.snapshot(ctx, names, extra...)
	if err != nil {
		return confirmed, err
	}
	var errs []error
	for _, c := range todo {
		rec, err := e.doneOne(ctx, &store, snap, c, operator)
		if err != nil {
			errs = append(errs, err)
		}
		if rec != nil {
			confirmed = append(confirmed, rec)
		}
	}
	return confirmed, joinErrs(errs)
}

// doneOne takes one ceremony through done's steps: see where it stands,
// verify, commit, check what the enforcer did, record. It returns the
// confirmed ceremony: this one, or the record of another host that
// confirmed it first.
func (e *Env) doneOne(ctx context.Context, st **ledger.Store, snap *inventory.Snapshot, c *ledger.Ceremony, operator string) (*ledger.Ceremony, error) {
	rec, err := e.doneSteps(ctx, *st, snap, c, operator)
	if err != nil && isConflict(err) {
		// Another host got there first: say what it did.
		other, cerr := e.conflict(ctx, st, c.Repository, c.ID, "committed")
		if cerr != nil {
			return nil, cerr
		}
		if other != nil {
			return other, nil
		}
		return nil, refuse("repository %q: ceremony %s: %v; nothing committed here: run backup done again", c.Repository, c.ID, err)
	}
	return rec, err
}

func (e *Env) doneSteps(ctx context.Context, store *ledger.Store, snap *inventory.Snapshot, c *ledger.Ceremony, operator string) (*ledger.Ceremony, error) {
	committed := alreadyCommitted(snap.State, c)
	checks, warnings, problems, err := e.verify(snap, store, c, committed)
	if err != nil {
		return nil, e.notConfirmed(c, committed, err.Error())
	}
	if len(problems) > 0 {
		for _, p := range problems {
			e.say("repository %q: %s", c.Repository, p)
		}
		return nil, &Refusal{e.notConfirmed(c, committed, summarize(problems)).Error()}
	}
	for _, w := range warnings {
		e.say("repository %q: warning: %s", c.Repository, w)
	}
	doneBefore := map[string]bool{}
	for _, k := range needed(snap.State, c.Repository) {
		if k.Backup == enforcer.BackupDone {
			doneBefore[k.Locator] = true
		}
	}
	failpoint.Hit("done-verified")
	if err := e.commit(ctx, store, c, committed); err != nil {
		return nil, err
	}
	after, err := e.Source.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("repository %q: ceremony %s: the enforcer committed, but its result cannot be read; run backup done again: %w", c.Repository, c.ID, err)
	}
	left, post := e.examine(after, store.Coverage(), c, doneBefore)
	if c.RequireBackup && prepared(c) > 0 {
		checks = append(checks, "the enforcer marked exactly the manifest's keys Done")
	}
	if err := e.record(ctx, store, c, operator, checks, warnings, left, snap); err != nil {
		return nil, err
	}
	if post != nil {
		return c, &Warning{post.Error()}
	}
	return c, nil
}

// alreadyCommitted says whether a ceremony left committing by a crash was
// committed by the enforcer: every key it flagged is Done.
func alreadyCommitted(st *enforcer.State, c *ledger.Ceremony) bool {
	if c.Status != ledger.Committing || !c.RequireBackup || prepared(c) == 0 {
		return false
	}
	for _, k := range c.Keys {
		if k.EnforcerBackup != enforcer.BackupPrepared.String() {
			continue
		}
		if ek := find(st, c.Repository, k.Locator); ek == nil || ek.Backup != enforcer.BackupDone {
			return false
		}
	}
	return true
}

func prepared(c *ledger.Ceremony) int {
	n := 0
	for _, k := range c.Keys {
		if k.EnforcerBackup == enforcer.BackupPrepared.String() {
			n++
		}
	}
	return n
}

func find(st *enforcer.State, repo, locator string) *enforcer.Key {
	for _, k := range st.Keys {
		if k.Repository == repo && k.Locator == locator {
			return k
		}
	}
	return nil
}

// notConfirmed says, truthfully, what state a refused done leaves.
func (e *Env) notConfirmed(c *ledger.Ceremony, committed bool, why string) error {
	if committed {
		return fmt.Errorf("repository %q: ceremony %s not confirmed, though the enforcer has committed it (its keys are Done there, no confirmed ceremony covers them): %s; fix it and run backup done again",
			c.Repository, c.ID, why)
	}
	return fmt.Errorf("repository %q: ceremony %s not confirmed, nothing committed: %s", c.Repository, c.ID, why)
}

// verify checks the manifest on the repository's tokens, the enforcer's
// Prepared set, and the backup token, which must hold every manifest key
// and should hold every older key still needed.
func (e *Env) verify(snap *inventory.Snapshot, store *ledger.Store, c *ledger.Ceremony, committed bool) (checks, warnings, problems []string, err error) {
	repo := c.Repository
	tokens := snap.Of(repo)
	if err := inventory.Unreadable(tokens); err != nil {
		return nil, nil, nil, err
	}
	for _, t := range tokens {
		p := checkOn(c.Keys, t)
		problems = append(problems, p...)
		if len(p) == 0 {
			checks = append(checks, fmt.Sprintf("all %s on %s (serial %s)", human.Count(len(c.Keys), "key"), t.Token.Describe(), t.Contents.Serial))
		}
	}
	if c.RequireBackup && !committed {
		problems = append(problems, preparedSet(snap.State, c, &checks)...)
	}
	if bt := backupToken(snap); bt != nil {
		if bt.Err != nil {
			return nil, nil, nil, bt.Err
		}
		p := checkOn(c.Keys, *bt)
		problems = append(problems, p...)
		if len(p) == 0 {
			checks = append(checks, fmt.Sprintf("all %s on %s (serial %s), same public keys", human.Count(len(c.Keys), "key"), bt.Token.Describe(), bt.Contents.Serial))
		}
		w, n := older(snap.State, store, c, *bt)
		warnings = append(warnings, w...)
		if n > 0 && len(w) == 0 {
			checks = append(checks, fmt.Sprintf("the %s still needed %s on %s too", human.Count(n, "older key"), human.Noun(n, "is", "are"), bt.Token.Describe()))
		}
	}
	return checks, warnings, problems, nil
}

// preparedSet compares the enforcer's Prepared keys with those the manifest
// took as Prepared.
func preparedSet(st *enforcer.State, c *ledger.Ceremony, checks *[]string) []string {
	want := map[string]bool{}
	for _, mk := range c.Keys {
		if mk.EnforcerBackup == enforcer.BackupPrepared.String() {
			want[mk.Locator] = true
		}
	}
	var extra, gone, problems []string
	for _, k := range needed(st, c.Repository) {
		if k.Backup == enforcer.BackupPrepared && !want[k.Locator] {
			extra = append(extra, k.Locator)
		}
	}
	for _, l := range slices.Sorted(maps.Keys(want)) {
		if k := find(st, c.Repository, l); k == nil || k.Backup != enforcer.BackupPrepared {
			gone = append(gone, l)
		}
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("the enforcer has %d Prepared keys that are not in the manifest (backup prepare run by hand?): %v", len(extra), extra))
	}
	if len(gone) > 0 {
		problems = append(problems, fmt.Sprintf("%s no longer Prepared in the enforcer (backup rollback run by hand?): %v", human.Count(len(gone), "manifest key is", "manifest keys are"), gone))
	}
	if len(extra) == 0 && len(gone) == 0 && len(want) > 0 {
		*checks = append(*checks, "the enforcer's Prepared set is the manifest")
	}
	return problems
}

// older checks on the backup token the keys still needed that an earlier
// ceremony backed up: a backup token must hold everything a recovery needs.
// It returns a warning per key the token lacks, naming where the key's
// backup is, and how many older keys it checked.
func older(st *enforcer.State, store *ledger.Store, c *ledger.Ceremony, bt hsmcheck.Result) ([]string, int) {
	cov := store.Coverage()
	var warnings []string
	n := 0
	for _, k := range needed(st, c.Repository) {
		if c.Has(k.Locator) {
			continue
		}
		prev := cov.Covering(c.Repository, k.Locator)
		if prev == nil {
			continue // not backed up anywhere: a later ceremony takes it
		}
		rec, _ := prev.Key(k.Locator)
		n++
		if p := checkKey(rec, bt); p != "" {
			where := fmt.Sprintf("ceremony %s attested it without reading a backup token", prev.ID)
			if prev.Verified() {
				where = fmt.Sprintf("only backup token %q of ceremony %s holds it", prev.BackupToken.Name, prev.ID)
			}
			warnings = append(warnings, fmt.Sprintf("%s: %s", p, where))
		}
	}
	return warnings, n
}

// commit runs the enforcer's commit, recorded before and after.
func (e *Env) commit(ctx context.Context, store *ledger.Store, c *ledger.Ceremony, committed bool) error {
	if !c.RequireBackup || committed || prepared(c) == 0 {
		return nil
	}
	// The claim, committed before the enforcer's commit: of two hosts, one
	// gets it; the other's compare-and-set fails, and it runs nothing.
	prev, prevClaim := c.Status, c.Claim
	c.Status, c.Claim = ledger.Committing, ledger.NewClaim(ctx)
	if err := store.SaveOpen(ctx, c); err != nil {
		c.Status, c.Claim = prev, prevClaim
		return err
	}
	failpoint.Hit("done-committing")
	if _, err := e.CLI.Run(ctx, "backup", "commit", "-r", c.Repository); err != nil {
		if errors.Is(err, enforcer.ErrUnreachable) {
			// The commit did not run: the ceremony is open as before.
			c.Status, c.Claim = ledger.Open, nil
			if serr := store.SaveOpen(ctx, c); serr != nil {
				err = errors.Join(err, serr)
			}
			return fmt.Errorf("repository %q: ceremony %s not confirmed, nothing committed, still open: %w", c.Repository, c.ID, err)
		}
		return fmt.Errorf("repository %q: ceremony %s not confirmed, the commit's outcome unknown (run backup done again): %w", c.Repository, c.ID, err)
	}
	failpoint.Hit("after-commit")
	return nil
}

// examine reads what the enforcer did: keys made meanwhile (left for the
// next ceremony), and keys it marked otherwise than the manifest says.
func (e *Env) examine(after *enforcer.State, cov ledger.Coverage, c *ledger.Ceremony, doneBefore map[string]bool) (int, error) {
	left := 0
	var warn error
	for _, k := range needed(after, c.Repository) {
		rec, inManifest := c.Key(k.Locator)
		switch {
		case c.RequireBackup && inManifest && rec.EnforcerBackup == enforcer.BackupPrepared.String() && k.Backup != enforcer.BackupDone:
			warn = errors.Join(warn, fmt.Errorf("repository %q: key %s is %s in the enforcer after commit, not Done", c.Repository, k.Locator, k.Backup))
		case c.RequireBackup && !inManifest && k.Backup == enforcer.BackupDone && !doneBefore[k.Locator]:
			warn = errors.Join(warn, fmt.Errorf("repository %q: the enforcer marked key %s Done without verification: run a new ceremony", c.Repository, k.Locator))
		case !inManifest && cov.Covering(c.Repository, k.Locator) == nil:
			left++
		}
	}
	return left, warn
}

// record adds the ceremony to the history as confirmed, then forgets it as
// open; a crash between the two is finished by the next done.
func (e *Env) record(ctx context.Context, store *ledger.Store, c *ledger.Ceremony, operator string, checks, warnings []string, left int, snap *inventory.Snapshot) error {
	var backupRec *ledger.TokenRecord
	if bt := backupToken(snap); bt != nil {
		rec := tokenRecord(*bt)
		backupRec = &rec
	}
	c.Status = ledger.Confirmed
	c.Ended = e.now()
	c.EndOperator = operator
	c.BackupToken = backupRec
	c.Checks = checks
	c.Warnings = warnings
	c.LeftRequired = left
	if err := store.End(ctx, c); err != nil {
		if isConflict(err) {
			return err // another host ended it: doneOne says how
		}
		state := "nothing recorded"
		if c.RequireBackup && prepared(c) > 0 {
			state = "the enforcer has committed it, the history does not have it yet"
		}
		return fmt.Errorf("repository %q: ceremony %s verified, but %s: %w; run backup done again when %s can be written", c.Repository, c.ID, state, err, store.Where())
	}
	how := "the backup itself was attested by the operator, not verified (no --backup-token)"
	if backupRec != nil {
		how = fmt.Sprintf("verified on backup token %q (token %q serial %s)", backupRec.Name, backupRec.Label, backupRec.Serial)
	}
	e.say("repository %q: ceremony %s confirmed: %s backed up, %s", c.Repository, c.ID, human.Count(len(c.Keys), "key"), how)
	if left > 0 {
		e.say("repository %q: %s made during the ceremony %s not backed up yet: %s the next ceremony", c.Repository, human.Count(left, "key"), human.Noun(left, "is", "are"), human.Noun(left, "it needs", "they need"))
	}
	return nil
}
