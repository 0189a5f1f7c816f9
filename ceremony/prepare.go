package ceremony

import (
	"context"
	"fmt"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Prepare opens a ceremony for each of repos: the procedure's step 1.
//
// Where the repository has <RequireBackup/>, the enforcer flags its keys
// (backup prepare) and the manifest is its Prepared set, plus keys the
// enforcer calls Done that no confirmed ceremony covers (someone ran
// `ods-enforcer backup commit` by hand). Elsewhere the manifest is every key
// of the repository that no confirmed ceremony covers. Every manifest key
// must be on the repository's token and on each mirror, or the enforcer is
// rolled back and nothing is opened.
func Prepare(ctx context.Context, e *Env, repos []string, operator string) error {
	lock, store, err := e.begin()
	if err != nil {
		return err
	}
	defer lock.Release()
	for _, repo := range repos {
		if c := store.Open(repo); c != nil {
			return refuse("repository %q: ceremony %s is already open (prepared %s by %s): finish it with `backup done` or `backup rollback`",
				repo, c.ID, c.Prepared.Format("2006-01-02 15:04 MST"), c.Operator)
		}
	}
	var flagged []string
	for _, repo := range repos {
		r, _ := e.Cfg.ODS.Repository(repo)
		if !r.RequireBackup {
			continue
		}
		if _, err := e.cli().Run(ctx, "backup", "prepare", "-r", repo); err != nil {
			e.rollbackAll(ctx, flagged)
			return err
		}
		flagged = append(flagged, repo)
	}
	snap, err := e.snapshot(ctx, repos)
	if err != nil {
		e.rollbackAll(ctx, flagged)
		return err
	}
	cov := store.Coverage()
	var errs []error
	for _, repo := range repos {
		if err := e.prepareOne(ctx, store, snap, cov, repo, operator); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrs(errs)
}

func (e *Env) rollbackAll(ctx context.Context, repos []string) {
	for _, repo := range repos {
		if _, err := e.cli().Run(ctx, "backup", "rollback", "-r", repo); err != nil {
			e.say("repository %q: rollback failed, run `ods-enforcer backup rollback -r %s` by hand: %v", repo, repo, err)
		}
	}
}

func (e *Env) prepareOne(ctx context.Context, store *ledger.Store, snap *snapshot, cov ledger.Coverage, repo, operator string) error {
	r, _ := e.Cfg.ODS.Repository(repo)
	rollback := func() {
		if r.RequireBackup {
			e.rollbackAll(ctx, []string{repo})
		}
	}
	var keys []*enforcer.Key
	for _, k := range repoKeys(snap.state, repo) {
		covered := cov.Covering(repo, k.Locator) != nil
		switch {
		case k.Backup == enforcer.BackupPrepared:
			keys = append(keys, k)
		case (!r.RequireBackup || k.Backup == enforcer.BackupDone) && !covered:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		if len(repoKeys(snap.state, repo)) == 0 {
			e.say("repository %q: nothing to back up: the enforcer has no keys there", repo)
		} else {
			e.say("repository %q: nothing to back up: every key is covered by a confirmed ceremony", repo)
		}
		return nil
	}
	tokens := snap.byRepo[repo]
	if err := inventory.Unreadable(tokens); err != nil {
		rollback()
		return fmt.Errorf("repository %q: not prepared: %w", repo, err)
	}
	c := &ledger.Ceremony{
		ID: ledger.NewID(repo, e.now()), Repository: repo, Status: ledger.Open, RequireBackup: r.RequireBackup,
		Operator: operator, Prepared: e.now(), Tokens: tokenRecords(tokens),
	}
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
		how := "not prepared"
		if r.RequireBackup {
			how = "not prepared (the enforcer was rolled back)"
		}
		return refuse("repository %q: %s: %s", repo, how, summarize(problems))
	}
	if err := store.SaveOpen(c); err != nil {
		rollback()
		return err
	}
	e.say("repository %q: ceremony %s prepared: %d keys (%s) on %s", repo, c.ID, len(c.Keys), roles(c.Keys), describeTokens(c.Tokens))
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
