// Package backup owns the backup ceremony of the key backup procedure:
// prepare (step 1), and done or rollback (step 7), so that the enforcer's
// "Done" means "verified on every HSM and, where one is named, on the backup
// token". Each step records what it is about to do before it does it, so a
// crash at any moment leaves something the next step (or check) can see and
// finish.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Refusal is a ceremony step that was refused. Its message says what state
// the enforcer and the history are in after it.
type Refusal struct{ msg string }

func (r *Refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error { return &Refusal{fmt.Sprintf(format, args...)} }

// Warning is something found after a ceremony was confirmed: the ceremony
// stands, the operator should look.
type Warning struct{ msg string }

func (w *Warning) Error() string { return w.msg }

// Env is what a ceremony step works with: plain values, no configuration
// file (the command layer builds them).
type Env struct {
	Ledger *ledger.Ledger
	// Source reads the enforcer's database (read-only) and the tokens.
	Source   inventory.Source
	CLI      Enforcer      // ods-enforcer, for backup prepare, commit, rollback
	LockWait time.Duration // how long to wait for another host's step
	// Repositories are conf.xml's, by name.
	Repositories map[string]Repository
	// Tokens are every repository's token and mirror.
	Tokens []hsmcheck.Token
	// BackupToken returns the backup token configured under name.
	BackupToken func(name string) (hsmcheck.Token, error)
	Out         io.Writer // what the operator reads
	// Release runs after a ceremony is confirmed (also when done finds it
	// confirmed already by a run that died): the DS guard's release of
	// what was withheld for want of this backup.
	Release func(ctx context.Context) error
	// Witnesses are the people who watch the step (--witness), recorded
	// with it.
	Witnesses []string
}

// Enforcer runs ods-enforcer commands: enforcer.CLI, or a test's own.
type Enforcer interface {
	Run(ctx context.Context, args ...string) (string, error)
}

// Repository is what a ceremony needs of a conf.xml repository.
type Repository struct {
	RequireBackup bool
	TokenLabel    string
}

func (e *Env) now() time.Time { return time.Now().UTC() }

func (e *Env) say(format string, args ...any) { fmt.Fprintf(e.Out, format+"\n", args...) }

// begin takes the writers' lock and reads the ceremonies under it: the
// start of every ceremony step. The caller calls the returned unlock. seen
// is the open ceremonies as they were before the lock: a step that waited
// for another host's can tell the operator what became of the ceremony it
// meant. The lock serialises the writers of state_dir; on a MySQL ledger it
// is a courtesy (the same server: one waits for the other), and every
// change is a compare-and-set on the record as read (ledger.Store), which
// is what keeps two hosts on two Galera nodes from both acting.
func (e *Env) begin(ctx context.Context) (unlock func(), store *ledger.Store, seen map[string]string, err error) {
	seen = map[string]string{}
	if pre, err := e.Ledger.Ceremonies(ctx); err == nil {
		for _, repo := range pre.OpenRepositories() {
			seen[repo] = pre.Open(repo).ID
		}
	}
	unlock, err = e.Ledger.Lock(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err = e.Ledger.Ceremonies(ctx)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return unlock, store, seen, nil
}

// conflict says what a step that lost a compare-and-set found: another
// host's step is what happened to the ceremony. It waits, up to
// lock_timeout, for another host's commit in progress to end. It returns
// the ceremony's record when another host confirmed it (done counts it as
// confirmed: the release runs), a refusal that names what the other host
// did, or neither when the other host's claim is dead (its process gone, or
// past its deadline): the caller may take the ceremony over.
func (e *Env) conflict(ctx context.Context, st **ledger.Store, repo, id, verb string) (*ledger.Ceremony, error) {
	store := *st
	deadline := time.Now().Add(e.LockWait)
	told := false
	for {
		if h := store.Recorded(id); h != nil {
			switch h.Status {
			case ledger.Confirmed:
				e.say("repository %q: ceremony %s is confirmed already (by another host, or a run before this one): nothing %s here", repo, id, verb)
				return h, nil
			case ledger.Abandoned:
				return nil, refuse("repository %q: ceremony %s was rolled back by another host: nothing %s here", repo, id, verb)
			}
			return nil, refuse("repository %q: ceremony %s is %s already: nothing %s here", repo, id, h.Status, verb)
		}
		c := store.Open(repo)
		switch {
		case c == nil:
			return nil, refuse("repository %q: ceremony %s is no longer open, and not in the history (another host dropped it): nothing %s here", repo, id, verb)
		case c.ID != id:
			return nil, refuse("repository %q: another host opened ceremony %s meanwhile: nothing %s here", repo, c.ID, verb)
		case !store.Live(c):
			return nil, nil
		case c.Status == ledger.RollingBack:
			return nil, refuse("repository %q: ceremony %s is being rolled back by another host (%s): nothing %s here", repo, id, c.Claim, verb)
		case c.Status == ledger.Preparing:
			return nil, refuse("repository %q: ceremony %s is being prepared by another host (%s): nothing %s here", repo, id, c.Claim, verb)
		case c.Status != ledger.Committing:
			return nil, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, refuse("repository %q: ceremony %s: another host is committing it (%s): nothing %s here; run the step again once it is done", repo, id, c.Claim, verb)
		}
		if !told {
			e.say("repository %q: ceremony %s: another host is committing it (%s): waiting up to %s for it to end", repo, id, c.Claim, e.LockWait)
			told = true
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
		next, err := e.Ledger.Ceremonies(ctx)
		if err != nil {
			return nil, err
		}
		store, *st = next, next
	}
}

// isConflict reports whether err is a lost compare-and-set.
func isConflict(err error) bool {
	var ce *ledger.ConflictError
	return errors.As(err, &ce)
}

// snapshot reads the database and the tokens of repos, plus extra tokens
// (a backup token), in one pass.
func (e *Env) snapshot(ctx context.Context, repos []string, extra ...hsmcheck.Token) (*inventory.Snapshot, error) {
	var tokens []hsmcheck.Token
	for _, r := range repos {
		for _, t := range e.Tokens {
			if t.Repository == r && t.Kind != hsmcheck.KindBackupToken {
				tokens = append(tokens, t)
			}
		}
	}
	return inventory.Take(ctx, e.Source, append(tokens, extra...), hsmcheck.Request{})
}

// backupToken returns the backup token's result in snap, if one was read.
func backupToken(snap *inventory.Snapshot) *hsmcheck.Result {
	for i, r := range snap.Results {
		if r.Token.Kind == hsmcheck.KindBackupToken {
			return &snap.Results[i]
		}
	}
	return nil
}

func tokenRecords(rs []hsmcheck.Result) []ledger.TokenRecord {
	var out []ledger.TokenRecord
	for _, r := range rs {
		out = append(out, tokenRecord(r))
	}
	return out
}

func tokenRecord(r hsmcheck.Result) ledger.TokenRecord {
	return ledger.TokenRecord{Name: r.Token.Name, Kind: r.Token.Kind, Label: r.Contents.Label, Serial: r.Contents.Serial}
}

func keyType(k hsmcheck.Key) string {
	switch {
	case k.Curve != "":
		return k.Type + " " + k.Curve
	case k.Bits > 0:
		return fmt.Sprintf("%s %d bits", k.Type, k.Bits)
	}
	return k.Type
}

// checkOn checks that every key of keys is on token r with the public key
// recorded, and returns one line per key that is not.
func checkOn(keys []ledger.KeyRecord, r hsmcheck.Result) []string {
	var out []string
	for _, k := range keys {
		if p := checkKey(k, r); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func checkKey(k ledger.KeyRecord, r hsmcheck.Result) string {
	got, n := r.Contents.Find(k.Locator)
	switch {
	case n == 0:
		return fmt.Sprintf("key %s (%s) is missing from %s", k.Locator, k.Role, r.Token.Describe())
	case k.Fingerprint != "" && got.Fingerprint != "" && got.Fingerprint != k.Fingerprint:
		return fmt.Sprintf("key %s (%s) on %s is another key pair: public key %.16s, manifest %.16s",
			k.Locator, k.Role, r.Token.Describe(), got.Fingerprint, k.Fingerprint)
	case k.Type != "" && keyType(got) != k.Type:
		return fmt.Sprintf("key %s (%s) on %s is %s, manifest %s", k.Locator, k.Role, r.Token.Describe(), keyType(got), k.Type)
	}
	return ""
}

func summarize(problems []string) string {
	if len(problems) == 1 {
		return problems[0]
	}
	return fmt.Sprintf("%s (and %d more)", problems[0], len(problems)-1)
}

// needed returns the enforcer's keys of repo that are not DELETE: in use,
// assigned, or in a pool.
func needed(st *enforcer.State, repo string) []*enforcer.Key {
	var out []*enforcer.Key
	for _, k := range st.Keys {
		if k.Repository == repo && k.State != enforcer.Delete {
			out = append(out, k)
		}
	}
	return out
}

func roles(keys []ledger.KeyRecord) string {
	n := map[string]int{}
	for _, k := range keys {
		n[k.Role]++
	}
	var parts []string
	for _, r := range []string{"KSK", "ZSK", "CSK"} {
		if n[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[r], r))
		}
	}
	return strings.Join(parts, ", ")
}

// joinErrs joins the errors of several repositories: an operational error
// wins over a refusal, a refusal over a warning, so that the exit status
// says the worst.
func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	worst := 0
	for i, err := range errs {
		msgs[i] = err.Error()
		var r *Refusal
		var w *Warning
		switch {
		case errors.As(err, &w):
		case errors.As(err, &r):
			worst = max(worst, 1)
		default:
			worst = 2
		}
	}
	switch worst {
	case 0:
		return &Warning{strings.Join(msgs, "; ")}
	case 1:
		return &Refusal{strings.Join(msgs, "; ")}
	}
	// Not a Refusal inside: the exit status says "could not act".
	return errors.New(strings.Join(msgs, "; "))
}
