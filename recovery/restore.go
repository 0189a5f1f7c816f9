package recovery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// RecordVerification records a complete verification: as a restore where
// one happened (a token that no ceremony or restore recorded, or the
// operator's --restored), once per repository and set of tokens, in the
// history with the keys it checked; else as a check of HSMs that were
// never lost or replaced, an entry of the log, not the history.
func RecordVerification(ctx context.Context, l *ledger.Ledger, results []hsmcheck.Result, v *Verification, operator string, restored bool) error {
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
	known := map[string]bool{}
	for _, c := range store.History() {
		for _, t := range c.Tokens {
			known[t.Label+"\x00"+t.Serial] = true
		}
	}
	var fresh []string
	for _, r := range results {
		if _, ok := byRepo[r.Token.Repository]; !ok {
			repos = append(repos, r.Token.Repository)
		}
		rec := ledger.TokenRecord{Name: r.Token.Name, Kind: r.Token.Kind, Label: r.Contents.Label, Serial: r.Contents.Serial}
		byRepo[r.Token.Repository] = append(byRepo[r.Token.Repository], rec)
		if !known[rec.Label+"\x00"+rec.Serial] {
			fresh = append(fresh, fmt.Sprintf("%s %q serial %s", rec.Kind, rec.Name, rec.Serial))
		}
	}
	v.Restored = restored || len(fresh) > 0
	if !v.Restored {
		_, err := l.Append(ctx, ledger.KindRestoreCheck, struct {
			Operator string               `json:"operator"`
			Tokens   []ledger.TokenRecord `json:"tokens"`
			Summary  string               `json:"summary"`
		}{operator, flatten(byRepo, repos), v.Summary})
		if err == nil {
			v.Recorded = "recorded as a check, not a restore: every token is one a ceremony recorded (run with --restored to record a restore onto them)"
		}
		return err
	}
	why := "the operator says so (--restored)"
	if len(fresh) > 0 {
		why = "new tokens: " + strings.Join(fresh, ", ")
	}
	now := time.Now().UTC()
	for _, repo := range repos {
		toks := byRepo[repo]
		if sameRestore(store, repo, toks) {
			continue
		}
		c := &ledger.Ceremony{ID: ledger.NewID(repo, now), Repository: repo, Status: ledger.Restored,
			Operator: operator, Prepared: now, Ended: now, EndOperator: operator, Tokens: toks,
			Keys: v.keys[repo], Checks: []string{v.Summary, "a restore: " + why}}
		if err := store.End(ctx, c); err != nil {
			return err
		}
	}
	v.Recorded = "recorded as a restore in the history (" + why + ")"
	return nil
}

func flatten(byRepo map[string][]ledger.TokenRecord, repos []string) []ledger.TokenRecord {
	var out []ledger.TokenRecord
	for _, r := range repos {
		out = append(out, byRepo[r]...)
	}
	return out
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
