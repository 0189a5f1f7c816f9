package recovery

import (
	"context"
	"time"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// RecordRestore adds a complete restore to the history, once per
// repository and set of tokens: verified again, it is not recorded again.
func RecordRestore(ctx context.Context, l *ledger.Ledger, results []hsmcheck.Result, v *Verification) error {
	unlock, err := l.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	store, err := l.Ceremonies(ctx)
	if err != nil {
		return err
	}
	byRepo := map[string][]ledger.TokenRecord{}
	var repos []string
	for _, r := range results {
		if _, ok := byRepo[r.Token.Repository]; !ok {
			repos = append(repos, r.Token.Repository)
		}
		byRepo[r.Token.Repository] = append(byRepo[r.Token.Repository], ledger.TokenRecord{
			Name: r.Token.Name, Kind: r.Token.Kind, Label: r.Contents.Label, Serial: r.Contents.Serial})
	}
	now := time.Now().UTC()
	for _, repo := range repos {
		toks := byRepo[repo]
		if sameRestore(store, repo, toks) {
			continue
		}
		c := &ledger.Ceremony{ID: ledger.NewID(repo, now), Repository: repo, Status: ledger.Restored,
			Operator: ledger.Operator(""), Prepared: now, Ended: now, Tokens: toks, Checks: []string{v.Summary}}
		if err := store.End(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// sameRestore reports whether repo's newest record is a restore of the same
// tokens.
func sameRestore(store *ledger.Store, repo string, toks []ledger.TokenRecord) bool {
	for _, c := range store.History() {
		if c.Repository != repo {
			continue
		}
		if c.Status != ledger.Restored || len(c.Tokens) != len(toks) {
			return false
		}
		for i, t := range toks {
			if c.Tokens[i].Serial != t.Serial || c.Tokens[i].Name != t.Name {
				return false
			}
		}
		return true
	}
	return false
}
