package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Prepare opens a ceremony for each of repos: the procedure's step 1.
//
// The ceremony is recorded (preparing) before anything else happens. Where
// the repository has <RequireBackup/>, the enforcer then flags its keys
// (backup prepare). The manifest is every needed key (in use, assigned or
// in a pool) that no confirmed ceremony covers, whatever the enforcer's
// flag says: Prepared keys, keys committed by hand, imported keys and keys
// made before RequireBackup was turned on (Not Required, which the enforcer
// never flags). When nothing is new, the ceremony is a scheduled backup of
// every needed key. Every manifest key must be on the repository's token
// and on each mirror, or the enforcer is rolled back and nothing is opened.
// A ceremony left preparing by a crash is taken up again.
func Prepare(ctx context.Context, e *Env, repos []string, operator string) (opened []*ledger.Ceremony, err error) {
	unlock, store, _, err := e.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cs := map[string]*ledger.Ceremony{}
	for _, repo := range repos {
		c := store.Open(repo)
		switch {
		case c != nil && c.Status == ledger.Preparing && store.Live(c):
			return nil, refuse("repository %q: ceremony %s is being prepared by another host (%s): finish it there, or wait for it", repo, c.ID, c.Claim)
		case c != nil && c.Status == ledger.Preparing:
			e.say("repository %q: ceremony %s was interrupted while preparing (%s by %s): taking it up again", repo, c.ID, c.Prepared.Format(human.Display), c.Operator)
			// Taken over with a compare-and-set: of two hosts that both
			// found it interrupted, one takes it up.
			c.Claim = ledger.NewClaim(ctx)
			if err := store.SaveOpen(ctx, c); err != nil {
				return nil, lostPrepare(repo, err)
			}
			cs[repo] = c
		case c != nil:
			return nil, refuse("repository %q: ceremony %s is already open (prepared %s by %s): finish it with `backup done` or `backup rollback`",
				repo, c.ID, c.Prepared.Format(human.Display), c.Operator)
		}
	}
	// Record before acting: a crash after the enforcer's prepare leaves a
	// ceremony that says so.
	for _, repo := range repos {
		if cs[repo] != nil {
			continue
		}
		r := e.Repositories[repo]
		c := &ledger.Ceremony{ID: ledger.NewID(repo, e.now()), Repository: repo, Status: ledger.Preparing,
			RequireBackup: r.RequireBackup, Operator: operator, Prepared: e.now(), Claim: ledger.NewClaim(ctx)}
		// Recorded only if no ceremony is open: another host that opened
		// one meanwhile wins, and the enforcer is not asked.
		if err := store.SaveOpen(ctx, c); err != nil {
			return nil, lostPrepare(repo, err)
		}
		cs[repo] = c
	}
	failpoint.Hit("prepare-recorded")
	var flagged []string
	forget := func(repos ...string) {
		for _, repo := range repos {
			if err := store.Forget(ctx, repo); err != nil {
				e.say("repository %q: could not forget the ceremony being prepared: %v", repo, err)
			}
		}
	}
	for _, repo := range repos {
		r := e.Repositories[repo]
		if !r.RequireBackup {
			continue
		}
		if _, err := e.CLI.Run(ctx, "backup", "prepare", "-r", repo); err != nil {
			e.rollbackAll(ctx, flagged)
			forget(repos...)
			return nil, err
		}
		flagged = append(flagged, repo)
	}
	failpoint.Hit("prepare-flagged")
	snap, err := e.snapshot(ctx, repos)
	if err != nil {
		e.rollbackAll(ctx, flagged)
		forget(repos...)
		return nil, err
	}
	cov := store.Coverage()
	var errs []error
	for _, repo := range repos {
		if err := e.prepareOne(ctx, store, snap, cov, cs[repo]); err != nil {
			errs = append(errs, err)
		} else if cs[repo].Status == ledger.Open {
			opened = append(opened, cs[repo])
		}
	}
	return opened, joinErrs(errs)
}

// lostPrepare says that another host opened a ceremony first.
func lostPrepare(repo string, err error) error {
	var ce *ledger.ConflictError
	if errors.As(err, &ce) && ce.Current != nil {
		c := ce.Current
		return refuse("repository %q: ceremony %s is already open (prepared %s by %s, on another host meanwhile): finish it with `backup done` or `backup rollback`",
			repo, c.ID, c.Prepared.Format(human.Display), c.Operator)
	}
	return err
}

func (e *Env) rollbackAll(ctx context.Context, repos []string) {
	for _, repo := range repos {
		if _, err := e.CLI.Run(ctx, "backup", "rollback", "-r", repo); err != nil {
			e.say("repository %q: rollback failed, run `ods-enforcer backup rollback -r %s` by hand: %v", repo, repo, err)
		}
	}
}

// manifest chooses the keys a ceremony of repo backs up: every needed key no
// confirmed ceremony covers, Prepared keys always (the enforcer waits for
// them); when that is none, every needed key (a scheduled backup).
func manifest(st *enforcer.State, cov ledger.Coverage, repo string) (keys []*enforcer.Key, scheduled bool) {
	all := needed(st, repo)
	for _, k := range all {
		if k.Backup == enforcer.BackupPrepared || cov.Covering(repo, k.Locator) == nil {
			// A Required key (made after the enforcer's prepare) cannot be
			// committed by this ceremony: the next one takes it.
			if k.Backup != enforcer.BackupRequired {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return all, true
	}
	return keys, false
}

func (e *Env) prepareOne(ctx context.Context, store *ledger.Store, snap *inventory.Snapshot, cov ledger.Coverage, c *ledger.Ceremony) error {
	repo := c.Repository
	rollback := func() {
		if c.RequireBackup {
			e.rollbackAll(ctx, []string{repo})
		}
	}
	keys, scheduled := manifest(snap.State, cov, repo)
	if len(keys) == 0 {
		e.say("repository %q: nothing to back up: the enforcer has no keys there", repo)
		return store.Forget(ctx, repo)
	}
	tokens := snap.Of(repo)
	if err := inventory.Unreadable(tokens); err != nil {
		rollback()
		store.Forget(ctx, repo)
		return fmt.Errorf("repository %q: not prepared: %w", repo, err)
	}
	c.Tokens = tokenRecords(tokens)
	c.Keys = nil
	var problems []string
	for _, k := range keys {
		rec := ledger.KeyRecord{Locator: k.Locator, Role: k.Role.String(), Algorithm: k.Algorithm, Bits: k.Bits,
			Policy: k.PolicyName(), Zones: k.Zones(), EnforcerBackup: k.Backup.String()}
		for _, t := range tokens {
			got, n := t.Contents.Find(k.Locator)
			if n == 0 {
				problems = append(problems, fmt.Sprintf("key %s (%s) is missing from %s", k.Locator, k.Role, t.Token.Describe()))
				continue
			}
			if rec.Type == "" {
				rec.Type = keyType(got)
			}
			if rec.Fingerprint == "" {
				rec.Fingerprint = got.Fingerprint
			} else if got.Fingerprint != "" && got.Fingerprint != rec.Fingerprint {
				problems = append(problems, fmt.Sprintf("key %s (%s) differs between tokens: %s holds another key pair", k.Locator, k.Role, t.Token.Describe()))
			}
		}
		c.Keys = append(c.Keys, rec)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			e.say("repository %q: %s", repo, p)
		}
		rollback()
		if err := store.Forget(ctx, repo); err != nil {
			return err
		}
		how := "not prepared, nothing recorded"
		if c.RequireBackup {
			how = "not prepared (the enforcer was rolled back)"
		}
		return refuse("repository %q: %s: %s", repo, how, summarize(problems))
	}
	c.Status, c.Claim = ledger.Open, nil
	if err := store.SaveOpen(ctx, c); err != nil {
		if isConflict(err) {
			// Another host took the ceremony over (this run's claim ran out):
			// what the enforcer has flagged is its business now.
			return refuse("repository %q: ceremony %s: %v: not opened here", repo, c.ID, err)
		}
		rollback()
		return err
	}
	failpoint.Hit("prepare-opened")
	what := fmt.Sprintf("%s (%s)", human.Count(len(c.Keys), "key"), roles(c.Keys))
	if scheduled {
		what = fmt.Sprintf("%s (%s): nothing new since the last ceremony, a scheduled backup of every needed key", human.Count(len(c.Keys), "key"), roles(c.Keys))
	}
	e.say("repository %q: ceremony %s prepared: %s on %s", repo, c.ID, what, describeTokens(c.Tokens))
	r := e.Repositories[repo]
	e.say("next: back up token %q onto a backup token (procedure steps 2-6), then run:", r.TokenLabel)
	e.say("  ods-keyguard backup done -r %s --backup-token NAME", repo)
	return nil
}

func describeTokens(ts []ledger.TokenRecord) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("%s %q (token %q serial %s)", t.Kind, t.Name, t.Label, t.Serial))
	}
	return strings.Join(parts, " and ")
}
