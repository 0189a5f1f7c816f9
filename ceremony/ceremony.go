// Package ceremony owns the backup ceremony of the key backup procedure:
// prepare (step 1), and done or rollback (step 7), so that the enforcer's
// "Done" means "verified on every HSM and, where one is named, on the backup
// token".
package ceremony

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Refusal is a ceremony step that was refused: nothing was committed.
type Refusal struct{ msg string }

func (r *Refusal) Error() string { return r.msg }

// ExitCode makes a refusal exit 1.
func (r *Refusal) ExitCode() int { return 1 }

func refuse(format string, args ...any) error { return &Refusal{fmt.Sprintf(format, args...)} }

// Env is what a ceremony step works with.
type Env struct {
	Cfg *config.Config
	Out io.Writer // what the operator reads
	// AfterCommit, when set, runs between the enforcer's commit and the
	// record: a test's stand-in for a crash at the worst moment.
	AfterCommit func() error
}

func (e *Env) now() time.Time { return time.Now().UTC() }

func (e *Env) cli() enforcer.CLI {
	return enforcer.CLI{Program: e.Cfg.EnforcerCLI, Socket: e.Cfg.ODS.SocketFile}
}

func (e *Env) say(format string, args ...any) { fmt.Fprintf(e.Out, format+"\n", args...) }

// Operator names who runs the ceremony when --operator does not.
func Operator(flag string) string {
	if flag != "" {
		return flag
	}
	for _, v := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if s := os.Getenv(v); s != "" {
			return s
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// begin takes the state lock and reads the ceremonies under it: the start
// of every ceremony step. The caller releases the lock.
func (e *Env) begin() (*ledger.Lock, *ledger.Store, error) {
	lock, err := ledger.Acquire(e.Cfg.StateDir, e.Cfg.LockWait)
	if err != nil {
		return nil, nil, err
	}
	store, err := ledger.Load(e.Cfg.StateDir)
	if err != nil {
		lock.Release()
		return nil, nil, err
	}
	return lock, store, nil
}

// snapshot reads the database and the tokens of repos (plus extra) in one pass.
type snapshot struct {
	state  *enforcer.State
	byRepo map[string][]hsmcheck.Result
	extra  []hsmcheck.Result
}

func (e *Env) snapshot(ctx context.Context, repos []string, extra ...hsmcheck.Token) (*snapshot, error) {
	all, err := e.Cfg.Tokens()
	if err != nil {
		return nil, err
	}
	var tokens []hsmcheck.Token
	for _, r := range repos {
		tokens = append(tokens, config.RepositoryTokens(all, r)...)
	}
	snap, err := inventory.Take(ctx, e.Cfg.ODS.Datastore, append(tokens, extra...), hsmcheck.Request{})
	if err != nil {
		return nil, err
	}
	s := &snapshot{state: snap.State, byRepo: map[string][]hsmcheck.Result{}, extra: snap.Results[len(tokens):]}
	for _, r := range repos {
		s.byRepo[r] = snap.Of(r)
	}
	return s, nil
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

// checkOn checks that every manifest key is on token r with the manifest's
// public key, and returns one line per key that is not.
func checkOn(c *ledger.Ceremony, r hsmcheck.Result) []string {
	var out []string
	for _, k := range c.Keys {
		got, n := r.Contents.Find(k.Locator)
		switch {
		case n == 0:
			out = append(out, fmt.Sprintf("key %s (%s) is missing from %s", k.Locator, k.Role, r.Token.Describe()))
		case k.Fingerprint != "" && got.Fingerprint != "" && got.Fingerprint != k.Fingerprint:
			out = append(out, fmt.Sprintf("key %s (%s) on %s is another key pair: public key %.16s, manifest %.16s",
				k.Locator, k.Role, r.Token.Describe(), got.Fingerprint, k.Fingerprint))
		case k.Type != "" && keyType(got) != k.Type:
			out = append(out, fmt.Sprintf("key %s (%s) on %s is %s, manifest %s", k.Locator, k.Role, r.Token.Describe(), keyType(got), k.Type))
		}
	}
	return out
}

// sortedKeys lists locators of keys, sorted.
func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func summarize(problems []string) string {
	if len(problems) == 1 {
		return problems[0]
	}
	return fmt.Sprintf("%s (and %d more)", problems[0], len(problems)-1)
}

// repoKeys returns the enforcer's keys of repo that are not DELETE.
func repoKeys(st *enforcer.State, repo string) []*enforcer.Key {
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

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	// A refusal wins over nothing, an operational error over a refusal: the
	// exit status then says "could not act" rather than "refused".
	for _, err := range errs {
		var r *Refusal
		if !errors.As(err, &r) {
			return errors.Join(errs...)
		}
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return &Refusal{strings.Join(msgs, "; ")}
}
