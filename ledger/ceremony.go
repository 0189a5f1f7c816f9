package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/when"
)

// Ceremony statuses.
const (
	Preparing  = "preparing"  // recorded before the enforcer's backup prepare: a crash leaves this
	Open       = "open"       // prepared: the HSM backup is under way
	Committing = "committing" // verified; the enforcer's commit is being run
	Confirmed  = "confirmed"  // verified and committed: the keys are backed up
	Abandoned  = "abandoned"  // rolled back
	Restored   = "restored"   // HSMs restored from a backup and verified
)

// Ceremony is one backup ceremony of one repository: its manifest (the keys
// it backs up) and what happened to it.
type Ceremony struct {
	ID            string        `json:"id"`
	Repository    string        `json:"repository"`
	Status        string        `json:"status"`
	RequireBackup bool          `json:"require_backup"` // the enforcer flags keys for this repository
	Operator      string        `json:"operator"`
	Prepared      time.Time     `json:"prepared"`
	Tokens        []TokenRecord `json:"tokens"`
	Keys          []KeyRecord   `json:"keys"`

	// Set when the ceremony ends.
	Ended         time.Time    `json:"ended,omitzero"`
	EndOperator   string       `json:"end_operator,omitempty"`
	BackupToken   *TokenRecord `json:"backup_token,omitempty"` // nil: the backup was attested, not verified
	Checks        []string     `json:"checks,omitempty"`
	Warnings      []string     `json:"warnings,omitempty"`      // e.g. older keys the backup token lacks
	LeftRequired  int          `json:"left_required,omitempty"` // keys made during the ceremony, still Required
	AbandonReason string       `json:"abandon_reason,omitempty"`
}

// MarshalJSON writes an empty manifest as [], never null: a ceremony that
// crashed while preparing has none yet.
func (c Ceremony) MarshalJSON() ([]byte, error) {
	type plain Ceremony
	if c.Tokens == nil {
		c.Tokens = []TokenRecord{}
	}
	if c.Keys == nil {
		c.Keys = []KeyRecord{}
	}
	return json.Marshal(plain(c))
}

// TokenRecord names a token that a ceremony read.
type TokenRecord struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

// KeyRecord is one key of a ceremony's manifest.
type KeyRecord struct {
	Locator     string   `json:"locator"`
	Role        string   `json:"role"`
	Algorithm   int      `json:"algorithm"`
	Bits        int      `json:"bits"`
	Type        string   `json:"type"` // on the token: EC P-256, RSA 2048 bits
	Fingerprint string   `json:"fingerprint,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	Zones       []string `json:"zones,omitempty"`
	// EnforcerBackup is the enforcer's backup state at prepare: Prepared for
	// a key it flagged, Done for one committed by hand and never verified,
	// Not Required where the repository has no RequireBackup.
	EnforcerBackup string `json:"enforcer_backup"`
}

// Verified reports whether the backup token itself was read and checked.
func (c *Ceremony) Verified() bool { return c.BackupToken != nil }

// Has reports whether the manifest holds locator.
func (c *Ceremony) Has(locator string) bool {
	_, ok := c.Key(locator)
	return ok
}

// Key returns the manifest's record of locator.
func (c *Ceremony) Key(locator string) (KeyRecord, bool) {
	locator = strings.ToLower(locator)
	for _, k := range c.Keys {
		if k.Locator == locator {
			return k, true
		}
	}
	return KeyRecord{}, false
}

// NewID makes a ceremony id: the time, the repository and a random suffix.
func NewID(repo string, t time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, repo)
	return fmt.Sprintf("%s-%s-%s", t.UTC().Format(when.Stamp), safe, hex.EncodeToString(b))
}

// Store is the ceremony state: the open ceremonies, one per repository at
// most, and the history of ended ones, oldest first, to which records are
// only ever added. It is read under the lock and changed through its
// backend, which writes before the Store takes the change in.
type Store struct {
	b       backend
	open    map[string]*Ceremony
	history []*Ceremony
}

// Where names where the records are, for messages (Ledger.Where).
func (s *Store) Where() string { return s.b.where() }

// Open returns the open ceremony of repo, or nil.
func (s *Store) Open(repo string) *Ceremony { return s.open[repo] }

// OpenRepositories lists the repositories that have an open ceremony.
func (s *Store) OpenRepositories() []string {
	var out []string
	for r := range s.open {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// SaveOpen records c as repo's open ceremony (or its new status).
func (s *Store) SaveOpen(ctx context.Context, c *Ceremony) error {
	next := make(map[string]*Ceremony, len(s.open)+1)
	for k, v := range s.open {
		next[k] = v
	}
	next[c.Repository] = c
	if err := s.b.putOpen(ctx, next, c); err != nil {
		return err
	}
	s.open = next
	return nil
}

// End appends c to the history and then forgets it as open. A crash between
// the two leaves an open ceremony whose id is already in the history:
// Recorded tells, and Forget finishes the job.
func (s *Store) End(ctx context.Context, c *Ceremony) error {
	if s.Recorded(c.ID) == nil {
		next := append(append([]*Ceremony(nil), s.history...), c)
		if err := s.b.appendHistory(ctx, next, c); err != nil {
			return err
		}
		s.history = next
	}
	failpoint.Hit("ledger-appended")
	return s.Forget(ctx, c.Repository)
}

// Forget drops repo's open ceremony.
func (s *Store) Forget(ctx context.Context, repo string) error {
	if _, ok := s.open[repo]; !ok {
		return nil
	}
	next := make(map[string]*Ceremony, len(s.open))
	for k, v := range s.open {
		if k != repo {
			next[k] = v
		}
	}
	if err := s.b.dropOpen(ctx, next, repo); err != nil {
		return err
	}
	s.open = next
	return nil
}

// Recorded returns the ended ceremony with id, or nil.
func (s *Store) Recorded(id string) *Ceremony {
	for _, c := range s.history {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// History returns the ended ceremonies, newest first.
func (s *Store) History() []*Ceremony {
	out := make([]*Ceremony, len(s.history))
	for i, c := range s.history {
		out[len(out)-1-i] = c
	}
	return out
}

// LastConfirmed returns the newest confirmed ceremony of repo ("" for any).
func (s *Store) LastConfirmed(repo string) *Ceremony {
	for i := len(s.history) - 1; i >= 0; i-- {
		c := s.history[i]
		if c.Status == Confirmed && (repo == "" || c.Repository == repo) {
			return c
		}
	}
	return nil
}

// Coverage answers "is this key in a confirmed ceremony?" quickly.
type Coverage map[string]*Ceremony // repository + "/" + locator -> newest confirmed ceremony

// Coverage indexes the confirmed ceremonies' keys.
func (s *Store) Coverage() Coverage {
	cov := Coverage{}
	for _, c := range s.history {
		if c.Status != Confirmed {
			continue
		}
		for _, k := range c.Keys {
			cov[c.Repository+"/"+k.Locator] = c
		}
	}
	return cov
}

// Covering returns the newest confirmed ceremony that backed up locator of
// repo, or nil.
func (cov Coverage) Covering(repo, locator string) *Ceremony {
	return cov[repo+"/"+strings.ToLower(locator)]
}
