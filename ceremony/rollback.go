package ceremony

import (
	"context"

	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Rollback abandons the open ceremony of each of repos (every repository
// with one when repos is empty) and unflags the enforcer's Prepared keys.
func Rollback(ctx context.Context, e *Env, repos []string, operator, reason string) error {
	lock, store, err := e.begin()
	if err != nil {
		return err
	}
	defer lock.Release()
	if len(repos) == 0 {
		repos = store.OpenRepositories()
		if len(repos) == 0 {
			return refuse("nothing to roll back: no backup ceremony is open")
		}
	}
	for _, repo := range repos {
		r, _ := e.Cfg.ODS.Repository(repo)
		if r.RequireBackup {
			if _, err := e.cli().Run(ctx, "backup", "rollback", "-r", repo); err != nil {
				return err
			}
		}
		c := store.Open(repo)
		if c == nil {
			e.say("repository %q: no ceremony was open; the enforcer's Prepared keys, if any, are unflagged", repo)
			continue
		}
		c.Status = ledger.Abandoned
		c.Ended = e.now()
		c.EndOperator = operator
		c.AbandonReason = reason
		if err := store.End(c); err != nil {
			return err
		}
		e.say("repository %q: ceremony %s abandoned; its %d keys are not backed up", repo, c.ID, len(c.Keys))
	}
	return nil
}
