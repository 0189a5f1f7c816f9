package recovery

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// After a restore from the backup token, the enforcer's pool still lists
// the unused keys made after the last ceremony, which went with the HSMs.
// OpenDNSSEC 2.1 has no command to drop an unused key (key purge takes only
// dead keys). At a zone's rollover it takes them from the pool one by one,
// fails on each ("updatePolicy: error keytag": it needs the public key from
// the HSM) and leaves it PRIVATE with no zone: the rollover waits an
// enforcer run per lost key, and the rows stay for good. The remedy is to
// delete those hsmKey rows (UNUSED, or PRIVATE with no zone), with the
// enforcer stopped, in one transaction that checks each row again: the same
// state, still named by no keyData, the same locator. The enforcer then
// makes new keys to fill its pool, on the restored HSM.

// PoolKey is an hsmKey row of the pool that no HSM holds.
type PoolKey struct {
	ID         int64     `json:"id"`
	Locator    string    `json:"locator"`
	Repository string    `json:"repository"`
	Policy     string    `json:"policy"`
	Role       string    `json:"role"`
	State      string    `json:"state"` // UNUSED, or PRIVATE: taken for a rollover and never used
	Inception  time.Time `json:"inception"`
	state      enforcer.KeyState
}

// Prune is what recover prune-pool found, and did.
type Prune struct {
	Summary    string    `json:"summary"`
	Datastore  string    `json:"datastore"`
	Keys       []PoolKey `json:"keys"`
	Statements []string  `json:"statements"`
	// Blocked says why nothing may be deleted yet: keys a ceremony covers,
	// or keys in use, on no HSM (the restore is not complete).
	Blocked []string `json:"blocked"`
	Applied bool     `json:"applied"`
	Copy    string   `json:"database_copy,omitempty"` // SQLite: the whole database before
	Undo    string   `json:"undo,omitempty"`          // the rows deleted, as INSERT statements
}

// locatorRE is what a locator must look like to go into a statement.
var locatorRE = regexp.MustCompile(`^[0-9a-f]{1,256}$`)

// PlanPrune finds the unused keys made after the last ceremony that no
// HSM of their repository holds. Every token must have been read: a token
// that did not answer is not a token without the key.
func PlanPrune(st *enforcer.State, store *ledger.Store, tokens []Token, ds enforcer.Datastore) (*Prune, error) {
	p := &Prune{Datastore: ds.String(), Keys: []PoolKey{}, Statements: []string{}, Blocked: []string{}}
	byRepo := map[string][]Token{}
	for _, t := range tokens {
		if t.Err != nil {
			return nil, fmt.Errorf("%s: %w: cannot tell which keys are on no HSM", tokenName(t.Kind, t.Name), t.Err)
		}
		byRepo[t.Repository] = append(byRepo[t.Repository], t)
	}
	cov := store.Coverage()
	for _, k := range st.Keys {
		toks := byRepo[k.Repository]
		if k.State == enforcer.Delete || len(toks) == 0 {
			continue
		}
		held := false
		for _, t := range toks {
			held = held || t.has(k.Locator)
		}
		if held {
			continue
		}
		switch Class(cov, k) {
		case After:
			if !locatorRE.MatchString(k.Locator) {
				return nil, fmt.Errorf("key %d: locator %q is not hexadecimal: not a key ods-keyguard removes", k.ID, k.Locator)
			}
			if k.State != enforcer.Unused && k.State != enforcer.Private {
				p.Blocked = append(p.Blocked, fmt.Sprintf("key %s %s is %s with no zone, on no HSM: not a state ods-keyguard removes", k.Locator, k.Role, k.State))
				continue
			}
			p.Keys = append(p.Keys, PoolKey{ID: k.ID, Locator: k.Locator, Repository: k.Repository, Policy: k.PolicyName(),
				Role: k.Role.String(), State: k.State.String(), Inception: k.Inception, state: k.State})
		default:
			p.Blocked = append(p.Blocked, fmt.Sprintf("key %s %s (%s) is on no HSM: %s", k.Locator, k.Role, k.Usage(), lostKey(cov, k).Fate()))
		}
	}
	sort.Slice(p.Keys, func(i, j int) bool { return p.Keys[i].ID < p.Keys[j].ID })
	for _, k := range p.Keys {
		p.Statements = append(p.Statements, deleteStatement(k))
	}
	switch {
	case len(p.Blocked) > 0:
		p.Summary = fmt.Sprintf("the restore is not complete: %s in use or on the backup token %s on no HSM; restore %s (recover verify) before removing anything from the pool", human.Count(len(p.Blocked), "key"), human.Noun(len(p.Blocked), "is", "are"), human.Noun(len(p.Blocked), "it", "them"))
	case len(p.Keys) == 0:
		p.Summary = "nothing to remove: every key in the enforcer's pool is on an HSM"
	default:
		p.Summary = fmt.Sprintf("%s made after the last ceremony, never used by a zone, %s on no HSM; the enforcer still lists %s, and at a rollover would take %s and fail", human.Count(len(p.Keys), "key"), human.Noun(len(p.Keys), "is", "are"), human.Noun(len(p.Keys), "it", "them"), human.Noun(len(p.Keys), "it", "them one by one"))
	}
	return p, nil
}

// deleteStatement deletes one row, and only while it is still in the
// state it was read in and unassigned: the same text runs on SQLite and
// MySQL.
func deleteStatement(k PoolKey) string {
	return enforcer.Removal{ID: k.ID, Locator: k.Locator, State: k.state}.Statement()
}

// EnforcerRunning says whether ods-enforcerd runs for conf: its socket
// answers, or a process of that name runs with that conf.xml. "" when
// neither.
func EnforcerRunning(socket, conf string) string {
	if socket != "" {
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return "its socket " + socket + " answers"
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range procs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "ods-enforcerd" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		used := "/etc/opendnssec/conf.xml"
		for i, a := range args {
			switch {
			case (a == "-c" || a == "--config") && i+1 < len(args):
				used = args[i+1]
			case strings.HasPrefix(a, "--config="):
				used = strings.TrimPrefix(a, "--config=")
			}
		}
		if !filepath.IsAbs(used) {
			if cwd, err := os.Readlink(filepath.Join(d, "cwd")); err == nil {
				used = filepath.Join(cwd, used)
			}
		}
		if sameFile(used, conf) {
			return fmt.Sprintf("process %s runs with %s", filepath.Base(d), conf)
		}
	}
	return ""
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(fa, fb)
}

// ErrChanged is a row that is no longer what the plan saw.
var ErrChanged = enforcer.ErrChanged

// Apply removes the plan's keys from the enforcer's database, with the
// enforcer stopped, in one transaction (enforcer.RemoveKeys) that deletes
// each row only while it is still as planned: a row that is no longer
// UNUSED, is now assigned, or carries another locator stops it all, and
// nothing is deleted. Before anything is deleted it writes into state (the
// state_dir) the rows as INSERT statements (the undo) and, for SQLite, a
// copy of the whole database.
func (p *Prune) Apply(ctx context.Context, ds enforcer.Datastore, state *statedir.Dir, now time.Time) error {
	if len(p.Blocked) > 0 || len(p.Keys) == 0 {
		return nil
	}
	stamp := now.UTC().Format(human.Stamp)
	undoName := "prune-pool-" + stamp + ".undo.sql"
	keys := make([]enforcer.Removal, len(p.Keys))
	for i, k := range p.Keys {
		keys[i] = enforcer.Removal{ID: k.ID, Locator: k.Locator, State: k.state}
	}
	opt := enforcer.PruneOptions{
		Before: func(rows []enforcer.HSMKeyRow) error {
			var undo bytes.Buffer
			fmt.Fprintf(&undo, "-- ods-keyguard recover prune-pool, %s: the hsmKey rows it deleted from %s.\n-- To put them back, with the enforcer stopped, run these statements.\n",
				now.UTC().Format(time.RFC3339), ds)
			for _, r := range rows {
				fmt.Fprintln(&undo, r.Insert(ds.MySQL != nil))
			}
			if err := state.Create(undoName, undo.Bytes(), 0o600); err != nil {
				return err
			}
			p.Undo = state.Name(undoName)
			return nil
		},
	}
	if ds.MySQL == nil {
		copyName := "kasp.db.before-prune-" + stamp
		opt.Copy = func(data []byte) error {
			if err := state.Create(copyName, data, 0o600); err != nil {
				return fmt.Errorf("copy of enforcer database %s: %w", ds, err)
			}
			p.Copy = state.Name(copyName)
			return nil
		}
	}
	if _, err := enforcer.RemoveKeys(ctx, ds, keys, opt); err != nil {
		// Nothing was deleted: the undo and the copy would record a
		// removal that did not happen.
		for _, f := range []*string{&p.Undo, &p.Copy} {
			if *f != "" {
				state.Remove(filepath.Base(*f))
				*f = ""
			}
		}
		return err
	}
	p.Applied = true
	p.Summary = fmt.Sprintf("removed %s on no HSM, never used by a zone, from the enforcer's database; start ods-enforcerd: it makes new keys on the HSM to fill the pool, for the next ceremony to back up", human.Count(len(p.Keys), "key"))
	return nil
}
