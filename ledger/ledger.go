// Package ledger keeps ods-keyguard's own records: backup ceremonies, open
// and past, and what the DS hooks forwarded, withheld and held. In files
// (state_dir, the default), each written atomically with a checksum, so a
// crash leaves the old state or the new one and a damaged or hand-edited
// file is reported by name instead of being replaced.
package ledger

import (
	"context"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
)

// Options say where the ledger is and how writers wait for each other.
type Options struct {
	Dir      string        // state_dir
	Group    int           // group of a state_dir made here (-1: leave it)
	LockWait time.Duration // how long a writer waits for another
	Waiting  io.Writer     // told once when a writer has to wait (nil: nobody)
	// ReadOnly opens an existing ledger without making anything: what
	// check, run by the monitoring user, does.
	ReadOnly bool
	// MySQL, when set, keeps the ledger in that database instead of Dir:
	// one ledger for the hosts of an enforcer pair.
	MySQL *mysqlx.Server
	// Create makes the MySQL ledger's tables when they are missing: ledger
	// init and ledger migrate, nothing else (DDL on a Galera cluster runs
	// cluster-wide, in total order, and conflicts with every writer).
	Create bool
	// Inspect opens a MySQL ledger without checking it (schema, read-only
	// server): for ledger status, which reports those.
	Inspect bool
	// Migrating opens a state_dir even after it was migrated: for
	// ledger migrate, run again, to say so.
	Migrating bool
}

// Ledger is ods-keyguard's record. Writers of ceremonies take the Lock;
// the DS hooks add their records without it.
type Ledger struct {
	b backend
}

// backend is where the records live. Changes of the open ceremonies are
// compare-and-set: prev is the checksum of the record as the Store read it
// ("" for none), and a record that is something else now fails the change
// with a *ConflictError that says what it is.
type backend interface {
	// lock takes the writers' lock: the correctness of the files backend
	// (one host); a courtesy for the MySQL one (who waits for whom).
	lock(ctx context.Context) (unlock func(), err error)
	// loadCeremonies reads the open ceremonies with their checksums, and
	// the history.
	loadCeremonies(ctx context.Context) (open map[string]*Ceremony, sums map[string]string, history []*Ceremony, err error)
	// putOpen records c as open; next is the whole open set after it.
	putOpen(ctx context.Context, next map[string]*Ceremony, c *Ceremony, prev string) (sum string, err error)
	dropOpen(ctx context.Context, next map[string]*Ceremony, repo, prev string) error
	// end adds c to the history (when add; history is the whole history
	// after it) and drops its open record (when prev is not ""; open is
	// the open set after it), in one step where the backend can.
	end(ctx context.Context, history []*Ceremony, open map[string]*Ceremony, c *Ceremony, add bool, prev string) error
	// exclusive says the writers' lock serialises every writer (one host).
	exclusive() bool
	// loadDS reads the events, and names the files it refused to read.
	loadDS(ctx context.Context) ([]DSEvent, []Refused, error)
	addDS(ctx context.Context, evs []DSEvent) error
	// compactDS folds the hooks' additions in and bounds the records to
	// max events beyond those that still decide something (bound).
	compactDS(ctx context.Context, max int) error
	// addPublish adds the publish gate's records of one zone (its name
	// lower case, without the final dot); loadPublish reads those of a
	// zone, or of every zone for "" (publish.go).
	addPublish(ctx context.Context, zone string, recs []PublishRecord) error
	loadPublish(ctx context.Context, zone string) ([]PublishRecord, error)
	// where names the records for messages (Options.String).
	where() string
	// holder names the live writer that holds the lock, or "" when none
	// does (or it cannot be told): what a reader asks without locking.
	lockHolder(ctx context.Context) string
	close() error
}

// String names where the ledger is, for messages: "state_dir PATH", or
// "the ledger server mysql://user@host:port/db" (never a password).
func (o Options) String() string {
	if o.MySQL != nil {
		return "the ledger server " + o.MySQL.String()
	}
	return "state_dir " + o.Dir
}

// New opens the ledger: in o.MySQL when set, else in o.Dir. Whatever it
// asks a server runs under ctx's deadline.
func New(ctx context.Context, o Options) (*Ledger, error) {
	if o.MySQL != nil {
		b, err := openMySQL(ctx, o)
		if err != nil {
			return nil, err
		}
		return &Ledger{b: b}, nil
	}
	b, err := openFiles(o)
	if err != nil {
		return nil, err
	}
	return &Ledger{b: b}, nil
}

// Where names where the records are, for messages: "state_dir PATH" or "the
// ledger server mysql://user@host:port/db".
func (l *Ledger) Where() string { return l.b.where() }

// LockHolder names the live writer holding the writers' lock ("pid 1234
// (ods-keyguard backup prepare)"), or "" when none does: how check tells a
// ceremony in progress from one a crash interrupted, without locking.
func (l *Ledger) LockHolder(ctx context.Context) string { return l.b.lockHolder(ctx) }

// Close releases what the ledger holds open.
func (l *Ledger) Close() error { return l.b.close() }

// Lock takes the writers' lock. Call the returned function to let the next
// writer in. In state_dir (one host) it serialises every writer. On a MySQL
// ledger it is a courtesy only (GET_LOCK, which a Galera cluster or a
// fail-over to a replica does not share): it makes a writer wait, and say
// for whom, rather than run into a conflict; what keeps two hosts from both
// acting on one ceremony is the compare-and-set of every Store change.
func (l *Ledger) Lock(ctx context.Context) (func(), error) { return l.b.lock(ctx) }

// Ceremonies reads the open ceremonies and the history. Changes go through
// the Store, are written at once, and fail when another writer changed the
// record first (ConflictError); take the Lock first.
func (l *Ledger) Ceremonies(ctx context.Context) (*Store, error) {
	open, sums, history, err := l.b.loadCeremonies(ctx)
	if err != nil {
		return nil, err
	}
	if open == nil {
		open = map[string]*Ceremony{}
	}
	if sums == nil {
		sums = map[string]string{}
		for repo, c := range open {
			_, sums[repo], _ = seal(c)
		}
	}
	return &Store{b: l.b, open: open, sums: sums, history: history}, nil
}

// host names this machine in records, for a ledger that two hosts share.
func host() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// DS reads the DS records: the compacted ones and what hooks added since.
func (l *Ledger) DS(ctx context.Context) (*DSBook, error) {
	evs, refused, err := l.b.loadDS(ctx)
	if err != nil {
		return nil, err
	}
	b := Book(evs)
	b.Refused = refused
	return b, nil
}

// AddDS records events durably, without waiting for the lock: what a hook
// does before it exits, however long a ceremony holds the lock.
func (l *Ledger) AddDS(ctx context.Context, evs ...DSEvent) error {
	for i := range evs {
		evs[i] = NewEvent(evs[i])
	}
	return l.b.addDS(ctx, evs)
}

// CompactDS folds what the hooks added into the compacted records and
// bounds them: every event that still decides something is kept, and the
// newest others up to 10,000 events in all (see bound). Take the Lock first.
func (l *Ledger) CompactDS(ctx context.Context) error {
	return l.b.compactDS(ctx, maxEvents)
}

// Exposed names what of the ledger others than its writers can change: for
// state_dir, folders writable by their group or by everyone. A MySQL ledger
// relies on the server's grants: nothing to say here.
func (l *Ledger) Exposed() []string {
	if f, ok := l.b.(*files); ok {
		return f.exposed()
	}
	return nil
}

// Refused is a file in state_dir's DS spool that was not read as a record,
// with why: the trust model lets only root and state_dir's owner write
// there. Aside: a writer moved it into ds/refused already.
type Refused struct {
	Path   string `json:"path"`
	Name   string `json:"-"`
	Reason string `json:"reason"`
	Aside  bool   `json:"moved_aside"`
}

// Operator names who acts, for the records: flag when given (--operator),
// else the user behind sudo, else the user.
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
