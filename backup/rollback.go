package backup

import (
	"context"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Rollback abandons the open ceremony of each of repos (every repository
// with one when repos is empty) and unflags the enforcer's Prepared keys.
// It refuses a ceremony that is committing, or whose keys the enforcer has
// Done already: those are finished by done, which verifies and records.
// The ceremony is marked rolling back (a compare-and-set) before the
// enforcer is asked: a done on another host can no longer commit it, and
// one that committed first makes this refuse.
func Rollback(ctx context.Context, e *Env, repos []string, operator, reason string) (abandoned []*ledger.Ceremony, err error) {
	unlock, store, seen, err := e.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for repo, id := range seen {
		if c := store.Open(repo); (c == nil || c.ID != id) && store.Recorded(id) != nil && (len(repos) == 0 || contains(repos, repo)) {
			// Ended while this run waited for the lock.
			return nil, rollbackLost(store, repo, id)
		}
	}
	if len(repos) == 0 {
		repos = store.OpenRepositories()
		if len(repos) == 0 {
			return nil, refuse("nothing to roll back: no backup ceremony is open")
		}
	}
	// Another host acts on it now (committing, rolling back, preparing).
	for _, repo := range repos {
		if c := store.Open(repo); c != nil && store.Live(c) {
			return nil, rollbackLost(store, repo, c.ID)
		}
	}
	var st *enforcer.State
	for _, repo := range repos {
		c := store.Open(repo)
		if c == nil || !c.RequireBackup || prepared(c) == 0 {
			continue
		}
		if st == nil {
			if st, err = e.Source.State(ctx); err != nil {
				if c.Status == ledger.Committing {
					return nil, refuse("repository %q: ceremony %s is committing and the enforcer's database cannot be read to tell whether the commit happened (%v): run `backup done` (nothing rolled back, the history unchanged)", repo, c.ID, err)
				}
				return nil, err
			}
		}
		if n := doneKeys(st, c); n > 0 {
			how := "committed by hand?"
			if c.Status == ledger.Committing {
				how = "a backup done that was interrupted after the commit"
			}
			return nil, refuse("repository %q: the enforcer has %s of ceremony %s Done (%s): run `backup done`, which verifies them and records the ceremony (nothing rolled back, the history unchanged)", repo, human.Count(n, "key"), c.ID, how)
		}
	}
	failpoint.Hit("rollback-checked")
	for _, repo := range repos {
		r := e.Repositories[repo]
		c := store.Open(repo)
		if c != nil {
			// The claim, before the enforcer is asked.
			prev, prevClaim := c.Status, c.Claim
			c.Status, c.Claim = ledger.RollingBack, ledger.NewClaim(ctx)
			if err := store.SaveOpen(ctx, c); err != nil {
				c.Status, c.Claim = prev, prevClaim
				if !isConflict(err) {
					return abandoned, err
				}
				return abandoned, rollbackLost(store, repo, c.ID)
			}
		}
		if r.RequireBackup {
			if _, err := e.CLI.Run(ctx, "backup", "rollback", "-r", repo); err != nil {
				return abandoned, err
			}
		}
		failpoint.Hit("rollback-unflagged")
		enf := "the enforcer has them Required again"
		if !r.RequireBackup {
			enf = "the enforcer was not asked: no RequireBackup"
		}
		if c == nil {
			e.say("repository %q: no ceremony was open; the enforcer's Prepared keys, if any, are unflagged (Required again)", repo)
			continue
		}
		c.Status = ledger.Abandoned
		c.Ended = e.now()
		c.EndOperator = operator
		c.AbandonReason = reason
		if err := store.End(ctx, c); err != nil {
			return abandoned, err
		}
		abandoned = append(abandoned, c)
		e.say("repository %q: ceremony %s abandoned; its %s not backed up (%s; the history records it as abandoned)", repo, c.ID, human.Count(len(c.Keys), "key is", "keys are"), enf)
	}
	return abandoned, nil
}

// rollbackLost says what another host did to ceremony id, which this
// rollback therefore leaves alone.
func rollbackLost(store *ledger.Store, repo, id string) error {
	if h := store.Recorded(id); h != nil {
		switch h.Status {
		case ledger.Confirmed:
			return refuse("repository %q: ceremony %s is confirmed already (by another host): nothing rolled back", repo, id)
		case ledger.Abandoned:
			return refuse("repository %q: ceremony %s was rolled back by another host already: nothing more to do", repo, id)
		}
		return refuse("repository %q: ceremony %s is %s already: nothing rolled back", repo, id, h.Status)
	}
	c := store.Open(repo)
	switch {
	case c == nil:
		return refuse("repository %q: ceremony %s is no longer open (another host dropped it): nothing rolled back", repo, id)
	case c.ID != id:
		return refuse("repository %q: another host opened ceremony %s meanwhile: nothing rolled back", repo, c.ID)
	case c.Status == ledger.Committing:
		return refuse("repository %q: ceremony %s: another host is committing it (%s): nothing rolled back", repo, id, c.Claim)
	case c.Status == ledger.RollingBack:
		return refuse("repository %q: ceremony %s is being rolled back by another host (%s)", repo, id, c.Claim)
	case c.Status == ledger.Preparing:
		return refuse("repository %q: ceremony %s is being prepared by another host (%s): nothing rolled back", repo, id, c.Claim)
	}
	return refuse("repository %q: ceremony %s: another host changed it meanwhile (it is %s now): nothing rolled back; run backup rollback again if it should be", repo, id, c.Status)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// doneKeys counts the keys a ceremony flagged that the enforcer has Done.
func doneKeys(st *enforcer.State, c *ledger.Ceremony) int {
	n := 0
	for _, k := range c.Keys {
		if k.EnforcerBackup != enforcer.BackupPrepared.String() {
			continue
		}
		if ek := find(st, c.Repository, k.Locator); ek != nil && ek.Backup == enforcer.BackupDone {
			n++
		}
	}
	return n
}
