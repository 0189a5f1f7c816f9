package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Ceremony statuses.
const (
	Preparing  = "preparing"  // recorded before the enforcer's backup prepare: a crash leaves this
	Open       = "open"       // prepared: the HSM backup is under way
	Committing = "committing" // verified; the enforcer's commit is being run
	// RollingBack is recorded before the enforcer's backup rollback: a
	// commit can no longer start, and a crash leaves this.
	RollingBack = "rolling back"
	Confirmed   = "confirmed" // verified and committed: the keys are backed up
	Abandoned   = "abandoned" // rolled back
	Restored    = "restored"  // HSMs restored from a backup and verified
)

// Ceremony is one backup ceremony of one repository: its manifest (the keys
// it backs up) and what happened to it.
type Ceremony struct {
	ID            string        `json:"id"`
	Repository    string        `json:"repository"`
	Status        string        `json:"status"`
	RequireBackup bool          `json:"require_backup"` // the enforcer flags keys for this repository
	Operator      string        `json:"operator"`
	Witnesses     []string      `json:"witnesses,omitempty"` // named at prepare (--witness)
	Prepared      time.Time     `json:"prepared"`
	Tokens        []TokenRecord `json:"tokens"`
	Keys          []KeyRecord   `json:"keys"`

	// Set when the ceremony ends.
	Ended         time.Time    `json:"ended,omitzero"`
	EndOperator   string       `json:"end_operator,omitempty"`
	EndWitnesses  []string     `json:"end_witnesses,omitempty"` // named at done or rollback
	BackupToken   *TokenRecord `json:"backup_token,omitempty"`  // nil: the backup was attested, not verified
	Checks        []string     `json:"checks,omitempty"`
	Warnings      []string     `json:"warnings,omitempty"`      // e.g. older keys the backup token lacks
	LeftRequired  int          `json:"left_required,omitempty"` // keys made during the ceremony, still Required
	AbandonReason string       `json:"abandon_reason,omitempty"`

	// Claim names the process that acts on the ceremony while it is
	// preparing, committing or rolling back; cleared when it ends.
	Claim *Claim `json:"claim,omitempty"`
}

// Claim is a ceremony step in progress: who runs it, and the moment by
// which its deadline has ended it, dead or alive. The claim is written
// (compare-and-set) before the enforcer command it authorises, so two
// hosts never both run it; another host takes a claim over only once its
// holder is gone (a dead pid on this host) or its deadline is past.
type Claim struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Until time.Time `json:"until"`
}

// claimSkew is how far the clocks of two hosts may disagree: a claim of
// another host is taken over only this long after its deadline.
const claimSkew = 30 * time.Second

// NewClaim is this process's claim, good until ctx's deadline (an hour
// without one).
func NewClaim(ctx context.Context) *Claim {
	until := time.Now().Add(time.Hour)
	if dl, ok := ctx.Deadline(); ok {
		until = dl
	}
	return &Claim{Host: host(), PID: os.Getpid(), Until: until.UTC().Truncate(time.Microsecond)}
}

// String names the claim's holder: "host H pid P (until T)".
func (c *Claim) String() string {
	if c == nil {
		return "nobody"
	}
	return fmt.Sprintf("host %s pid %d (until %s at the latest)", c.Host, c.PID, c.Until.UTC().Format(time.RFC3339))
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
	// KeyTag is the key's DNSKEY key tag in its zones (0: in a pool).
	KeyTag int `json:"keytag,omitempty"`
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
	return fmt.Sprintf("%s-%s-%s", t.UTC().Format(human.Stamp), safe, hex.EncodeToString(b))
}

// Store is the ceremony state: the open ceremonies, one per repository at
// most, and the history of ended ones, oldest first, to which records are
// only ever added. Every change is a compare-and-set against the record as
// this Store read it (or last wrote it): a change another writer made
// meanwhile, on this host or another, makes it fail with a ConflictError
// that says what the record is now. That, not the writers' lock, is what
// keeps two hosts from both acting on one ceremony: on a Galera cluster the
// lock is not shared.
type Store struct {
	b       backend
	l       *Ledger
	open    map[string]*Ceremony
	sums    map[string]string // repository -> the open record's checksum as read or written
	history []*Ceremony
}

// ConflictError is a change refused because another writer changed the
// ceremony first. Current is the repository's open ceremony now (nil:
// none), Ended the ceremony's record in the history (nil: none).
type ConflictError struct {
	Repository, ID string
	Current        *Ceremony
	Ended          *Ceremony
	sum            string
}

func (e *ConflictError) Error() string {
	switch {
	case e.Ended != nil:
		return fmt.Sprintf("ceremony %s: is %s already (another host ended it)", e.ID, e.Ended.Status)
	case e.Current != nil && e.Current.ID == e.ID:
		by := ""
		if e.Current.Claim != nil {
			by = ", by " + e.Current.Claim.String()
		}
		return fmt.Sprintf("ceremony %s: another host changed it meanwhile: it is %s now%s", e.ID, e.Current.Status, by)
	case e.Current != nil:
		return fmt.Sprintf("repository %q: another host opened ceremony %s meanwhile", e.Repository, e.Current.ID)
	case e.ID != "":
		return fmt.Sprintf("ceremony %s: no longer open (another host ended it)", e.ID)
	}
	return fmt.Sprintf("repository %q: another host changed its ceremony meanwhile", e.Repository)
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

// take learns from a conflict what the records are now.
func (s *Store) take(err error) error {
	var ce *ConflictError
	if !errors.As(err, &ce) {
		return err
	}
	next := make(map[string]*Ceremony, len(s.open))
	for k, v := range s.open {
		next[k] = v
	}
	delete(next, ce.Repository)
	delete(s.sums, ce.Repository)
	if ce.Current != nil {
		next[ce.Repository] = ce.Current
		s.sums[ce.Repository] = ce.sum
	}
	s.open = next
	if ce.Ended != nil && s.Recorded(ce.Ended.ID) == nil {
		s.history = append(append([]*Ceremony(nil), s.history...), ce.Ended)
	}
	return err
}

// SaveOpen records c as repo's open ceremony (or its new status), only if
// the record is still what this Store read: none, when c is new.
func (s *Store) SaveOpen(ctx context.Context, c *Ceremony) error {
	next := make(map[string]*Ceremony, len(s.open)+1)
	for k, v := range s.open {
		next[k] = v
	}
	next[c.Repository] = c
	sum, err := s.b.putOpen(ctx, next, c, s.sums[c.Repository])
	if err != nil {
		return s.take(err)
	}
	s.open = next
	s.sums[c.Repository] = sum
	s.l.autoCheckpoint(ctx)
	return nil
}

// End appends c to the history and forgets it as open, in one step where
// the backend can (one transaction in MySQL), guarded like SaveOpen. In
// state_dir they are two writes: a crash between them leaves an open
// ceremony whose id is already in the history; Recorded tells, and Forget
// finishes the job.
func (s *Store) End(ctx context.Context, c *Ceremony) error {
	c.Claim = nil
	add := s.Recorded(c.ID) == nil
	next := s.history
	if add {
		next = append(append([]*Ceremony(nil), s.history...), c)
	}
	nextOpen := s.open
	prev := ""
	if o, ok := s.open[c.Repository]; ok && o.ID == c.ID {
		prev = s.sums[c.Repository]
		nextOpen = make(map[string]*Ceremony, len(s.open))
		for k, v := range s.open {
			if k != c.Repository {
				nextOpen[k] = v
			}
		}
	}
	if err := s.b.end(ctx, next, nextOpen, c, add, prev); err != nil {
		return s.take(err)
	}
	s.history = next
	s.open = nextOpen
	if prev != "" {
		delete(s.sums, c.Repository)
	}
	s.l.autoCheckpoint(ctx)
	return nil
}

// Forget drops repo's open ceremony, if it is still what this Store read.
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
	if err := s.b.dropOpen(ctx, next, repo, s.open[repo].ID, s.sums[repo]); err != nil {
		return s.take(err)
	}
	s.open = next
	delete(s.sums, repo)
	s.l.autoCheckpoint(ctx)
	return nil
}

// Live reports whether c's claim is held by a process that may still act
// on it: on a ledger whose lock serialises every writer (state_dir), none
// is; else a claim whose deadline (plus the clocks' skew) has not passed
// and, on this host, whose pid still runs.
func (s *Store) Live(c *Ceremony) bool {
	if c == nil || c.Claim == nil || s.b.exclusive() {
		return false
	}
	if !time.Now().Before(c.Claim.Until.Add(claimSkew)) {
		return false // past its deadline: whatever runs under it has stopped
	}
	if c.Claim.Host == host() {
		// A pid of this host tells at once (a pid reused by another
		// process keeps the claim only until its deadline).
		return c.Claim.PID != os.Getpid() && alive(c.Claim.PID)
	}
	return true
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
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
