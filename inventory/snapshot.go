package inventory

import (
	"context"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

// Snapshot is one read of the enforcer's database and of tokens, taken
// together: what every command that judges keys starts from.
type Snapshot struct {
	State   *enforcer.State
	Results []hsmcheck.Result
}

// Take reads the datastore and the tokens in parallel, within ctx. When the
// database cannot be read, the token reads are stopped and the error is
// returned; a token that cannot be read is in its Result.
func Take(ctx context.Context, src Source, tokens []hsmcheck.Token, req hsmcheck.Request) (*Snapshot, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tctx, tcancel := tokenContext(ctx)
	defer tcancel()
	done := make(chan []hsmcheck.Result, 1)
	go func() { done <- src.Tokens(tctx, tokens, req) }()
	st, err := src.State(ctx)
	if err != nil {
		cancel()
		<-done // the readers are reaped before we return
		return nil, err
	}
	return &Snapshot{State: st, Results: <-done}, nil
}

// TakeFor reads the datastore first, then the tokens with the request that
// the enforcer's state asks for: for a read that needs to know the keys
// before it reads them (check's public keys of KSKs, for the parent's DS).
func TakeFor(ctx context.Context, src Source, tokens []hsmcheck.Token, req func(*enforcer.State) hsmcheck.Request) (*Snapshot, error) {
	st, err := src.State(ctx)
	if err != nil {
		return nil, err
	}
	tctx, cancel := tokenContext(ctx)
	defer cancel()
	return &Snapshot{State: st, Results: src.Tokens(tctx, tokens, req(st))}, nil
}

// tokenContext is what the token reads get: three quarters of the time left,
// so that a token that hangs is given up on while what comes after (the
// ledger, the parent, the answer) still has a deadline to work in.
func tokenContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Until(dl)*3/4))
}

// Of returns the results of the tokens that hold repo's keys (its own and
// its mirrors'), in order.
func (s *Snapshot) Of(repo string) []hsmcheck.Result {
	var out []hsmcheck.Result
	for _, r := range s.Results {
		if r.Token.Repository == repo && r.Token.Kind != hsmcheck.KindBackupToken {
			out = append(out, r)
		}
	}
	return out
}

// Unreadable returns the first of results that could not be read.
func Unreadable(results []hsmcheck.Result) error {
	for _, r := range results {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}
