// Package ledger keeps ods-keyguard's own records: backup ceremonies, open
// and past, and what the DS hooks forwarded, withheld and held. In files
// (state_dir, the default), each written atomically with a checksum, so a
// crash leaves the old state or the new one and a damaged or hand-edited
// file is reported by name instead of being replaced.
//
// # The log
//
// Every record is also an entry of one append-only log whose entries are
// chained by hash, on both backends: the ceremonies and each of their
// steps (KindCeremony, KindCeremonyDropped), the DS events of the hooks,
// releases, drops and parent sync (KindDS, KindDSCompacted), restore
// checks, prune-pool and refused PINs. The working records (history.json,
// the open ceremonies, events.json; the tables of a MySQL ledger) stay what
// the commands read; ledger verify checks that they are what the log
// recorded, record by record, both ways. The records written before the
// log existed are covered by its first entry (KindBegun), which lists each
// one's SHA-256.
//
// Records that have no working copy of their own go through one function,
// with a kind (one word naming what happened) and a payload (any value
// that encodes as a JSON object):
//
//	entry, err := l.Append(ctx, "published", struct {
//		Zone   string   `json:"zone"`
//		Serial uint32   `json:"serial"`
//		Keys   []string `json:"keys"`
//		Reason string   `json:"reason"`
//	}{...})
//
// and AppendAll(ctx, kind, payloads) for several at once, in one write.
// That is how the publish gate's decisions ("published", "held", "refused",
// "released at ceremony") become entries.
//
// An entry is stored as its body, the Entry (number, time, host, kind,
// payload) in compact JSON, byte for byte what is hashed, with the hash of
// the entry before it and its own:
//
//	leaf = SHA-256("ods-keyguard/ledger/entry\n" || body)
//	hash = SHA-256("ods-keyguard/ledger/chain\n" || prev || leaf)
//
// the first entry's prev being 32 zero bytes. Verification reads the
// stored bytes, never a re-encoding. In state_dir the log is segment files
// of 1,024 entries (log/NNN.log, named by their first entry's number), the
// last one rewritten atomically under the log folder's own flock, held for
// the write alone (milliseconds: a hook never waits behind a ceremony). In
// MySQL it is keyguard_log, appended in the transaction of the record it
// logs, under a unique seq and a unique prev: two writers that append after
// the same entry conflict (a duplicate key on one server, a certification
// failure on Galera), and one tries again from the new head. One order,
// never a fork, and no lock that a cluster does not share.
//
// # Checkpoints
//
// After every ceremony step (and every other write, where the key can be
// read) the log's size and head hash are signed with the operator's
// Ed25519 key ([ledger] signing_key) as a C2SP signed note whose body has
// the tlog-checkpoint shape (origin, size, base64 hash), and stored
// (log/checkpoints/, keyguard_checkpoint). A change to an entry the
// checkpoint covers, by someone without the key, no longer matches it; the
// short form (Checkpoint.Short) goes on the paper ceremony form, so the
// paper pins the log too. An export of one ceremony (Export) carries its
// entries, a checkpoint and the leaf hashes between: VerifyExport checks it
// with the public key alone.
//
// # Compaction
//
// The bound on the DS records that compaction keeps (see bound) applies to
// the working records as before. The log keeps every entry: what compaction
// drops from the working records stays in the log, with its hash, and a
// KindDSCompacted entry names what was dropped, so that verification tells
// a record compacted away from one removed by hand. The log grows by an
// entry a record (about 300 bytes); ledger verify reads 100,000 entries in
// seconds (BENCHMARKS.md).
package ledger

import (
	"context"
	"io"
	"os"
	"os/user"
	"time"

	"golang.org/x/mod/sumdb/note"

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
	// Origin names the log in its checkpoints when the log is started
	// (its first entry keeps it); "" for this host and where the ledger is.
	Origin string
	// Signer gives the key that signs checkpoints ([ledger] signing_key),
	// asked for when one is to be signed; nil: checkpoints are not signed
	// here.
	Signer func(ctx context.Context) (note.Signer, error)
	// Keys are the public keys whose checkpoints verify accepts, in the
	// signed note form NAME+HASH+KEY.
	Keys []string
}

// Ledger is ods-keyguard's record. Writers of ceremonies take the Lock;
// the DS hooks add their records without it.
type Ledger struct {
	b    backend
	opts Options
	// last is the checkpoint this process signed last, and lastErr why
	// the last one it tried was not signed.
	last    *Checkpoint
	lastErr error
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
	dropOpen(ctx context.Context, next map[string]*Ceremony, repo, id, prev string) error
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

	// appendLog appends records to the log as entries of their own (the
	// records that have no working copy, ledger.Append), starting the log
	// when it is empty.
	appendLog(ctx context.Context, recs []record) ([]Stored, error)
	// readLog reads the log's stored entries from number from to number
	// to (0: to the end).
	readLog(ctx context.Context, from, to uint64) ([]Stored, error)
	// archiveCut picks the last entry to archive: written before before,
	// never the newest, on state_dir at a segment's end (0: none). stored
	// is the live log. cutNote says what limits the cut, for a message.
	archiveCut(ctx context.Context, stored []Stored, before time.Time) (uint64, error)
	cutNote() string
	// logStart is the number of the live log's first entry (0: empty).
	logStart(ctx context.Context) (uint64, error)
	// dropLog drops entries first through through from the live log
	// (archive.go); done already is no error.
	dropLog(ctx context.Context, first, through uint64) error
	putCheckpoint(ctx context.Context, c Checkpoint) error
	// checkpoints reads the stored checkpoints, by size; the newest
	// only when latest is set.
	checkpoints(ctx context.Context, latest bool) ([]storedNote, error)
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
		return &Ledger{b: b, opts: o}, nil
	}
	b, err := openFiles(o)
	if err != nil {
		return nil, err
	}
	return &Ledger{b: b, opts: o}, nil
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
	return &Store{b: l.b, l: l, open: open, sums: sums, history: history}, nil
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
	if err := l.b.addDS(ctx, evs); err != nil {
		return err
	}
	l.autoCheckpoint(ctx)
	return nil
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
