package ceremony

import (
	"context"
	"errors"
	"fmt"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Done confirms the open ceremony of each of repos (every repository with
// one when repos is empty): the procedure's step 7. It commits nothing when
// a manifest key is no longer on a token or mirror, when the enforcer's
// Prepared set is no longer the manifest's, or when the named backup token
// lacks a manifest key or holds another key pair under its CKA_ID.
// Confirmed reports what was confirmed, for whatever runs next (the hook's
// release).
func Done(ctx context.Context, e *Env, repos []string, backupToken, operator string) (confirmed []*ledger.Ceremony, err error) {
	lock, store, err := e.begin()
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if len(repos) == 0 {
		repos = store.OpenRepositories()
		if len(repos) == 0 {
			return nil, refuse("nothing to do: no backup ceremony is open (run `ods-keyguard backup prepare` before backing up the HSM)")
		}
	}
	var open []string
	for _, repo := range repos {
		c := store.Open(repo)
		switch {
		case c == nil:
			last := "none yet"
			if lc := store.LastConfirmed(repo); lc != nil {
				last = fmt.Sprintf("%s, %s", lc.ID, lc.Ended.Format("2006-01-02 15:04 MST"))
			}
			return nil, refuse("nothing to do: no backup ceremony is open for repository %q (last confirmed: %s)", repo, last)
		case store.Recorded(c.ID) != nil:
			// Interrupted between the history and the open list: finish.
			if err := store.Forget(repo); err != nil {
				return nil, err
			}
			e.say("repository %q: ceremony %s was already confirmed; nothing to do", repo, c.ID)
		default:
			open = append(open, repo)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	var extra []hsmcheck.Token
	if backupToken != "" {
		t, err := e.Cfg.BackupToken(backupToken)
		if err != nil {
			return nil, err
		}
		extra = append(extra, t)
	}
	snap, err := e.snapshot(ctx, open, extra...)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, repo := range open {
		c, err := e.doneOne(ctx, store, snap, store.Open(repo), operator)
		if err != nil {
			errs = append(errs, err)
		}
		if c != nil {
			confirmed = append(confirmed, c)
		}
	}
	return confirmed, joinErrs(errs)
}

func (e *Env) doneOne(ctx context.Context, store *ledger.Store, snap *snapshot, c *ledger.Ceremony, operator string) (*ledger.Ceremony, error) {
	repo := c.Repository
	byLocator := map[string]*enforcer.Key{}
	for _, k := range snap.state.Keys {
		if k.Repository == repo {
			byLocator[k.Locator] = k
		}
	}
	// A ceremony left "committing" was interrupted around the enforcer's
	// commit: if the enforcer committed, only the record is missing.
	committed := c.Status == ledger.Committing && c.RequireBackup
	for _, mk := range c.Keys {
		if k := byLocator[mk.Locator]; committed && (k == nil || k.Backup != enforcer.BackupDone) {
			committed = false
		}
	}

	var checks, problems []string
	tokens := snap.byRepo[repo]
	if err := inventory.Unreadable(tokens); err != nil {
		return nil, fmt.Errorf("repository %q: ceremony %s not confirmed, nothing committed: %w", repo, c.ID, err)
	}
	for _, t := range tokens {
		p := checkOn(c, t)
		problems = append(problems, p...)
		if len(p) == 0 {
			checks = append(checks, fmt.Sprintf("all %d keys on %s (serial %s)", len(c.Keys), t.Token.Describe(), t.Contents.Serial))
		}
	}
	if c.RequireBackup && !committed {
		want := map[string]bool{}
		for _, mk := range c.Keys {
			if mk.EnforcerBackup == enforcer.BackupPrepared.String() {
				want[mk.Locator] = true
			}
		}
		var extra, gone []string
		for _, k := range repoKeys(snap.state, repo) {
			if k.Backup == enforcer.BackupPrepared && !want[k.Locator] {
				extra = append(extra, k.Locator)
			}
		}
		for _, l := range sortedKeys(want) {
			if k := byLocator[l]; k == nil || k.Backup != enforcer.BackupPrepared {
				gone = append(gone, l)
			}
		}
		if len(extra) > 0 {
			problems = append(problems, fmt.Sprintf("the enforcer has %d Prepared keys that are not in the manifest (backup prepare run by hand?): %v", len(extra), extra))
		}
		if len(gone) > 0 {
			problems = append(problems, fmt.Sprintf("%d manifest keys are no longer Prepared in the enforcer (backup rollback run by hand?): %v", len(gone), gone))
		}
		if len(extra) == 0 && len(gone) == 0 {
			checks = append(checks, "the enforcer's Prepared set is the manifest")
		}
	}
	var backupRec *ledger.TokenRecord
	if len(snap.extra) > 0 {
		bt := snap.extra[0]
		if bt.Err != nil {
			return nil, fmt.Errorf("repository %q: ceremony %s not confirmed, nothing committed: %w", repo, c.ID, bt.Err)
		}
		p := checkOn(c, bt)
		problems = append(problems, p...)
		if len(p) == 0 {
			rec := tokenRecord(bt)
			backupRec = &rec
			checks = append(checks, fmt.Sprintf("all %d keys on %s (serial %s), same public keys", len(c.Keys), bt.Token.Describe(), bt.Contents.Serial))
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			e.say("repository %q: %s", repo, p)
		}
		return nil, refuse("repository %q: ceremony %s not confirmed, nothing committed: %s", repo, c.ID, summarize(problems))
	}

	doneBefore := map[string]bool{}
	for _, k := range repoKeys(snap.state, repo) {
		if k.Backup == enforcer.BackupDone {
			doneBefore[k.Locator] = true
		}
	}
	if c.RequireBackup && !committed {
		c.Status = ledger.Committing
		if err := store.SaveOpen(c); err != nil {
			return nil, err
		}
		if _, err := e.cli().Run(ctx, "backup", "commit", "-r", repo); err != nil {
			return nil, fmt.Errorf("repository %q: ceremony %s not confirmed: %w", repo, c.ID, err)
		}
		if e.AfterCommit != nil {
			if err := e.AfterCommit(); err != nil {
				return nil, err
			}
		}
	}
	after, err := enforcer.ReadDatastore(ctx, e.Cfg.ODS.Datastore)
	if err != nil {
		return nil, fmt.Errorf("repository %q: ceremony %s: committed, but cannot check the result: %w", repo, c.ID, err)
	}
	var warn error
	left := 0
	cov := store.Coverage()
	for _, k := range repoKeys(after, repo) {
		inManifest := c.Has(k.Locator)
		switch {
		case c.RequireBackup && inManifest && k.Backup != enforcer.BackupDone:
			warn = errors.Join(warn, fmt.Errorf("repository %q: key %s is %s in the enforcer after commit, not Done", repo, k.Locator, k.Backup))
		case c.RequireBackup && !inManifest && k.Backup == enforcer.BackupDone && !doneBefore[k.Locator]:
			warn = errors.Join(warn, fmt.Errorf("repository %q: the enforcer marked key %s Done without verification: run a new ceremony", repo, k.Locator))
		case c.RequireBackup && k.Backup == enforcer.BackupRequired:
			left++
		case !c.RequireBackup && !inManifest && cov.Covering(repo, k.Locator) == nil:
			left++
		}
	}
	if c.RequireBackup {
		checks = append(checks, "the enforcer marked exactly the manifest's keys Done")
	}
	c.Status = ledger.Confirmed
	c.Ended = e.now()
	c.EndOperator = operator
	c.BackupToken = backupRec
	c.Checks = checks
	c.LeftRequired = left
	if err := store.End(c); err != nil {
		return nil, err
	}
	how := "the backup itself was attested by the operator, not verified (no --backup-token)"
	if backupRec != nil {
		how = fmt.Sprintf("verified on backup token %q (token %q serial %s)", backupRec.Name, backupRec.Label, backupRec.Serial)
	}
	e.say("repository %q: ceremony %s confirmed: %d keys backed up, %s", repo, c.ID, len(c.Keys), how)
	if left > 0 {
		e.say("repository %q: %d keys made during the ceremony are not backed up yet: they need the next ceremony", repo, left)
	}
	if warn != nil {
		return c, &Refusal{warn.Error()}
	}
	return c, nil
}
