package backup

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Kinds of Stuck.
const (
	// PreparedWithout is keys the enforcer holds Prepared with no ceremony
	// open for them: a prepare killed after the enforcer's, or run by hand.
	PreparedWithout = "prepared without ceremony"
	// InterruptedPreparing and InterruptedRollingBack are ceremonies a
	// crash left in that step, with no live writer on them.
	InterruptedPreparing   = "interrupted preparing"
	InterruptedRollingBack = "interrupted rolling back"
	// OpenTooLong is a ceremony open past grace: its keys stay Prepared,
	// and the enforcer will not make them omnipresent.
	OpenTooLong = "open too long"
)

// Stuck is something the ceremonies leave stuck: what check warns about.
type Stuck struct {
	Kind       string
	Repository string
	Ceremony   string        // the ceremony's ID; "" for PreparedWithout
	Keys       int           // PreparedWithout: how many keys
	Open       time.Duration // OpenTooLong: for how long
}

// Brief says what is stuck, in a clause.
func (s Stuck) Brief() string {
	switch s.Kind {
	case PreparedWithout:
		return fmt.Sprintf("%s of repository %s %s Prepared in the enforcer with no ceremony open (a backup prepare interrupted, or run by hand)", human.Count(s.Keys, "key"), s.Repository, human.Noun(s.Keys, "is", "are"))
	case InterruptedPreparing:
		return fmt.Sprintf("backup ceremony %s of %s was interrupted while preparing", s.Ceremony, s.Repository)
	case InterruptedRollingBack:
		return fmt.Sprintf("backup ceremony %s of %s was interrupted while rolling back", s.Ceremony, s.Repository)
	}
	return fmt.Sprintf("backup ceremony %s of %s open for %s", s.Ceremony, s.Repository, human.Duration(s.Open))
}

// Advice says what the operator does about it.
func (s Stuck) Advice() string {
	r := s.Repository
	switch s.Kind {
	case PreparedWithout:
		return fmt.Sprintf("the enforcer will not make them omnipresent; take them into a ceremony with ods-keyguard backup prepare -r %s, or unflag them with ods-keyguard backup rollback -r %s", r, r)
	case InterruptedPreparing:
		return fmt.Sprintf("run ods-keyguard backup prepare -r %s again (it takes it up), or backup rollback -r %s", r, r)
	case InterruptedRollingBack:
		return fmt.Sprintf("run ods-keyguard backup rollback -r %s again to finish it", r)
	}
	return "finish it with backup done, or backup rollback; until then its keys stay Prepared"
}

func (s Stuck) String() string { return s.Brief() + ": " + s.Advice() }

// FindStuck finds what the ceremonies leave stuck at time at: keys the
// enforcer holds Prepared with no ceremony open, a ceremony a crash left
// preparing or rolling back, one open past grace. writer names the live
// writer holding the ledger's lock ("" when none): a ceremony preparing
// under it is in progress, not interrupted; so is one whose claim is live
// (another Galera node's).
func FindStuck(st *enforcer.State, store *ledger.Store, writer string, at time.Time, grace time.Duration) []Stuck {
	var out []Stuck
	prepared := map[string]int{}
	for _, k := range st.Keys {
		if k.State != enforcer.Delete && k.Backup == enforcer.BackupPrepared {
			prepared[k.Repository]++
		}
	}
	for _, repo := range slices.Sorted(maps.Keys(prepared)) {
		if store.Open(repo) == nil && writer == "" {
			out = append(out, Stuck{Kind: PreparedWithout, Repository: repo, Keys: prepared[repo]})
		}
	}
	for _, repo := range store.OpenRepositories() {
		c := store.Open(repo)
		s := Stuck{Repository: repo, Ceremony: c.ID}
		switch {
		case (c.Status == ledger.Preparing || c.Status == ledger.RollingBack) && (writer != "" || store.Live(c)):
			continue // in progress
		case c.Status == ledger.Preparing:
			s.Kind = InterruptedPreparing
		case c.Status == ledger.RollingBack:
			s.Kind = InterruptedRollingBack
		case at.Sub(c.Prepared) > grace:
			s.Kind, s.Open = OpenTooLong, at.Sub(c.Prepared)
		default:
			continue
		}
		out = append(out, s)
	}
	return out
}
