package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// files keeps the ledger in state_dir:
//
//	lock                   the writers' flock
//	ceremonies-open.json   the open ceremonies
//	history.json           the ended ones, only ever added to
//	ds/events.json         the DS records, compacted
//	ds/spool/*.json        DS records the hooks added since, one file each
type files struct {
	d        *statedir.Dir
	opts     Options
	lockWait time.Duration
}

const (
	openFile      = "ceremonies-open.json"
	historyFile   = "history.json"
	openFormat    = "ods-keyguard/open-ceremonies/1"
	historyFormat = "ods-keyguard/history/1"
)

func openFiles(o Options) (*files, error) {
	d, err := statedir.Open(o.Dir, !o.ReadOnly, o.Group)
	if errors.Is(err, os.ErrNotExist) && o.ReadOnly {
		return &files{opts: o}, nil // nothing recorded yet
	}
	if err != nil {
		return nil, err
	}
	if !o.Migrating {
		if err := checkMigrated(d); err != nil {
			d.Close()
			return nil, err
		}
	}
	return &files{d: d, opts: o}, nil
}

func (f *files) where() string { return f.opts.String() }

func (f *files) close() error {
	if f.d == nil {
		return nil
	}
	return f.d.Close()
}

func (f *files) lock(ctx context.Context) (func(), error) {
	if f.d == nil {
		return nil, fmt.Errorf("state_dir %s: does not exist", f.opts.Dir)
	}
	l, err := acquireFile(ctx, f.d, f.opts.LockWait, f.opts.Waiting)
	if err != nil {
		return nil, err
	}
	return l.release, nil
}

func (f *files) loadCeremonies(ctx context.Context) (map[string]*Ceremony, map[string]string, []*Ceremony, error) {
	open := map[string]*Ceremony{}
	var history []*Ceremony
	if f.d == nil {
		return open, nil, nil, nil
	}
	if err := load(f.d, openFile, openFormat, &open); err != nil {
		return nil, nil, nil, err
	}
	if err := load(f.d, historyFile, historyFormat, &history); err != nil {
		return nil, nil, nil, err
	}
	return open, nil, history, nil
}

// The files have one writer at a time, under the flock: what a writer read
// is what is there, and the compare-and-set holds by itself.

func (f *files) exclusive() bool { return true }

// Every change is recorded in the log first, then written to the state
// file: a crash between the two leaves a log that is one step ahead,
// which ledger verify names and the step, run again, catches up.

func (f *files) putOpen(ctx context.Context, next map[string]*Ceremony, c *Ceremony, prev string) (string, error) {
	doc, sum, err := seal(c)
	if err != nil {
		return "", err
	}
	if _, err := f.appendLog(ctx, []record{ceremonyRecord(doc)}); err != nil {
		return "", err
	}
	return sum, store(f.d, openFile, openFormat, next)
}

func (f *files) dropOpen(ctx context.Context, next map[string]*Ceremony, repo, id, prev string) error {
	if _, err := f.appendLog(ctx, []record{droppedRecord(repo, id)}); err != nil {
		return err
	}
	return store(f.d, openFile, openFormat, next)
}

// end writes the history, then the open list: a crash between the two is
// found by the next done (Store.Recorded) and finished.
func (f *files) end(ctx context.Context, history []*Ceremony, open map[string]*Ceremony, c *Ceremony, add bool, prev string) error {
	if add {
		doc, _, err := seal(c)
		if err != nil {
			return err
		}
		if _, err := f.appendLog(ctx, []record{ceremonyRecord(doc)}); err != nil {
			return err
		}
		if err := store(f.d, historyFile, historyFormat, history); err != nil {
			return err
		}
	}
	failpoint.Hit("ledger-appended")
	if prev == "" {
		return nil
	}
	return store(f.d, openFile, openFormat, open)
}

// envelope is the on-disk form of every state file.
type envelope struct {
	Format string          `json:"format"`
	SHA256 string          `json:"sha256"`
	Data   json.RawMessage `json:"data"`
}

// CorruptError is a state file, or a row of a MySQL ledger (Row), that
// cannot be trusted.
type CorruptError struct {
	Path   string
	Reason string
	Row    bool
}

func (e *CorruptError) Error() string {
	if e.Row {
		return fmt.Sprintf("%s: %s: restore it from a backup of the database; ods-keyguard does not replace it", e.Path, e.Reason)
	}
	return fmt.Sprintf("state file %s: %s: move it aside or restore it; ods-keyguard does not replace it", e.Path, e.Reason)
}

// load reads name into v. A missing file leaves v as it is and is no error.
func load(d *statedir.Dir, name, format string, v any) error {
	return loadMax(d, name, format, v, maxStateFile)
}

func loadMax(d *statedir.Dir, name, format string, v any, max int64) error {
	b, err := d.Read(name, max)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fileError(err)
	}
	return decode(d.Name(name), b, format, v)
}

// fileError turns a PathError into "state file PATH: reason".
func fileError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("state file %s: %w", pe.Path, pe.Err)
	}
	return err
}

func decode(path string, b []byte, format string, v any) error {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return &CorruptError{Path: path, Reason: "not valid JSON (" + err.Error() + ")"}
	}
	if env.Format != format {
		return &CorruptError{Path: path, Reason: fmt.Sprintf("format %q, want %q", env.Format, format)}
	}
	// The checksum is over the compact form: indentation is not content.
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.Data); err != nil {
		return &CorruptError{Path: path, Reason: "not valid JSON (" + err.Error() + ")"}
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return &CorruptError{Path: path, Reason: "checksum mismatch (damaged or edited by hand)"}
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return &CorruptError{Path: path, Reason: "unreadable data (" + err.Error() + ")"}
	}
	return nil
}

func encode(format string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	b, err := json.MarshalIndent(envelope{Format: format, SHA256: hex.EncodeToString(sum[:]), Data: data}, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// store writes v to name atomically.
func store(d *statedir.Dir, name, format string, v any) error {
	b, err := encode(format, v)
	if err != nil {
		return err
	}
	return d.WriteAtomic(name, b, statedir.FileMode)
}

// DS records: ds/events.json and the spool.

const (
	dsDir         = "ds"
	spoolDir      = "spool"
	eventsFile    = "events.json"
	eventsFormat  = "ods-keyguard/ds-events/1"
	eventsFormat2 = "ods-keyguard/ds-events/2"
	spoolFormat   = "ods-keyguard/ds-spool/1"
	legacyPending = "pending.json"
	legacyFormat  = "ods-keyguard/pending/1"
)

func (f *files) dsDirs(create bool) (*statedir.Dir, *statedir.Dir, error) {
	if f.d == nil {
		return nil, nil, os.ErrNotExist
	}
	ds, err := f.d.Sub(dsDir, create)
	if err != nil {
		return nil, nil, err
	}
	spool, err := ds.Sub(spoolDir, create)
	if err != nil {
		ds.Close()
		return nil, nil, err
	}
	return ds, spool, nil
}

func (f *files) loadDS(ctx context.Context) ([]DSEvent, []Refused, error) {
	var evs []DSEvent
	if f.d != nil {
		var legacy []legacyEntry
		if err := load(f.d, legacyPending, legacyFormat, &legacy); err != nil {
			return nil, nil, err
		}
		evs = append(evs, importLegacy(legacy)...)
	}
	ds, spool, err := f.dsDirs(false)
	if errors.Is(err, os.ErrNotExist) {
		return mergeEvents(evs), nil, nil // no hook has recorded anything yet
	}
	if err != nil {
		return nil, nil, err
	}
	defer ds.Close()
	defer spool.Close()
	compacted, err := loadEvents(ds)
	if err != nil {
		return nil, nil, err
	}
	evs = append(evs, compacted.Events...)
	batch, _, refused, err := readSpool(spool)
	if err != nil {
		return nil, nil, err
	}
	evs = append(evs, batch...)
	tail, _, err := f.logEvents(ctx, compacted.Mark)
	if err != nil {
		return nil, nil, err
	}
	evs = append(evs, tail...)
	refused = append(refused, asideList(ds)...)
	return mergeEvents(evs), refused, nil
}

// compactedEvents is events.json: the DS events compaction kept, and the
// log entry up to which it folded the log's DS events in (Mark).
type compactedEvents struct {
	Mark   uint64    `json:"mark"`
	Events []DSEvent `json:"events"`
}

// loadEvents reads events.json, in its form before the log (a list) too.
func loadEvents(ds *statedir.Dir) (compactedEvents, error) {
	var c compactedEvents
	b, err := ds.Read(eventsFile, maxStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fileError(err)
	}
	if err := decode(ds.Name(eventsFile), b, eventsFormat2, &c); err != nil {
		var old []DSEvent
		if decode(ds.Name(eventsFile), b, eventsFormat, &old) != nil {
			return c, err
		}
		c.Events = old
	}
	return c, nil
}

// logEvents reads the DS events the log holds after entry mark, and the
// number of the last entry read.
func (f *files) logEvents(ctx context.Context, mark uint64) ([]DSEvent, uint64, error) {
	list, err := f.readLog(ctx, mark+1, 0)
	if err != nil {
		return nil, 0, err
	}
	var evs []DSEvent
	last := mark
	for _, s := range list {
		var e Entry
		if err := json.Unmarshal(s.Body, &e); err != nil {
			return nil, 0, fmt.Errorf("log %s: an entry after %d is unreadable (%v): run ods-keyguard ledger verify", f.d.Name(logDir), last, err)
		}
		last = e.Seq
		if e.Kind != KindDS {
			continue
		}
		var ev DSEvent
		if err := json.Unmarshal(e.Payload, &ev); err != nil {
			return nil, 0, fmt.Errorf("log %s: entry %d: not a DS event (%v): run ods-keyguard ledger verify", f.d.Name(logDir), e.Seq, err)
		}
		evs = append(evs, ev)
	}
	return evs, last, nil
}

// refusedDir is where the writers move what the spool may not hold, under
// ds/: reported by check until an operator removes it.
const refusedDir = "refused"

// readSpool reads every spool file: the events of those it accepts, their
// names, and what it refused (not a regular file, too large, written by a
// user the trust model does not let write there). A refused file is never
// read, and never stops the others from being read.
func readSpool(spool *statedir.Dir) (evs []DSEvent, names []string, refused []Refused, err error) {
	all, err := spool.List(".json")
	if err != nil {
		return nil, nil, nil, err
	}
	for _, n := range all {
		var batch []DSEvent
		err := loadMax(spool, n, spoolFormat, &batch, maxSpoolFile)
		var re *statedir.RefusedError
		switch {
		case errors.As(err, &re):
			refused = append(refused, Refused{Path: re.Path, Name: n, Reason: re.Reason})
			continue
		case errors.Is(err, os.ErrNotExist):
			continue // compacted meanwhile
		case err != nil:
			return nil, nil, nil, err
		}
		evs = append(evs, batch...)
		names = append(names, n)
	}
	return evs, names, refused, nil
}

// asideList names what the writers moved into ds/refused, for the report.
func asideList(ds *statedir.Dir) []Refused {
	a, err := ds.Sub(refusedDir, false)
	if err != nil {
		return nil
	}
	defer a.Close()
	names, err := a.List("")
	if err != nil {
		return nil
	}
	var out []Refused
	for _, n := range names {
		out = append(out, Refused{Path: a.Name(n), Name: n, Reason: "moved aside, refused earlier", Aside: true})
	}
	return out
}

// addDS appends evs to the log, without the writers' lock: the log's own
// lock is held for the write alone, so nothing waits behind a ceremony.
// (Hooks of versions before the log wrote spool files, still read.)
func (f *files) addDS(ctx context.Context, evs []DSEvent) error {
	if len(evs) == 0 {
		return nil
	}
	ds, spool, err := f.dsDirs(true)
	if err != nil {
		return err
	}
	ds.Close()
	spool.Close()
	recs := make([]record, len(evs))
	for i, e := range evs {
		if recs[i], err = dsRecord(e); err != nil {
			return err
		}
	}
	_, err = f.appendLog(ctx, recs)
	return err
}

// compactDS folds the log's DS events after events.json's mark, the spool
// (and a legacy pending.json) into events.json,
// bounded to max events beyond those that still decide, then removes what
// it folded in. Call it under the lock. A crash in between leaves spool
// files that are folded in again: events are merged by id.
func (f *files) compactDS(ctx context.Context, max int) error {
	ds, spool, err := f.dsDirs(true)
	if err != nil {
		return err
	}
	defer ds.Close()
	defer spool.Close()
	var legacy []legacyEntry
	if err := load(f.d, legacyPending, legacyFormat, &legacy); err != nil {
		return err
	}
	compacted, err := loadEvents(ds)
	if err != nil {
		return err
	}
	evs := append(compacted.Events, importLegacy(legacy)...)
	batch, names, refused, err := readSpool(spool)
	if err != nil {
		return err
	}
	evs = append(evs, batch...)
	tail, mark, err := f.logEvents(ctx, compacted.Mark)
	if err != nil {
		return err
	}
	evs = append(evs, tail...)
	// What the spool may not hold goes aside, once: check reports it there
	// until an operator looks at it and removes it.
	if len(refused) > 0 {
		aside, err := ds.Sub(refusedDir, createDir)
		if err != nil {
			return err
		}
		defer aside.Close()
		for _, r := range refused {
			if _, err := spool.MoveTo(r.Name, aside); err != nil {
				return err
			}
		}
	}
	all := mergeEvents(evs)
	evs = bound(all, max, time.Now())
	if evs == nil {
		evs = []DSEvent{}
	}
	if dropped := droppedIDs(all, evs); len(dropped) > 0 {
		if _, err := f.appendLog(ctx, []record{{KindDSCompacted, compactedRecord{Dropped: dropped}}}); err != nil {
			return err
		}
	}
	if err := store(ds, eventsFile, eventsFormat2, compactedEvents{Mark: mark, Events: evs}); err != nil {
		return err
	}
	for _, n := range names {
		if err := spool.Remove(n); err != nil {
			return err
		}
	}
	if legacy != nil {
		// Its entries are in events.json now, under ids derived from theirs.
		return f.d.Remove(legacyPending)
	}
	return nil
}

// exposed names the folders of state_dir that others than their owner can
// write: the group or everyone. The trust model wants them 2750: a group
// that can write there can delete records, or add files that are then
// refused (see statedir.Dir.Trusted).
func (f *files) exposed() []string {
	if f.d == nil {
		return nil
	}
	var out []string
	check := func(d *statedir.Dir) {
		fi, err := d.Stat()
		if err != nil {
			return
		}
		if m := fi.Mode().Perm(); m&0o022 != 0 {
			who := "its group"
			if m&0o002 != 0 {
				who = "everyone"
			}
			out = append(out, fmt.Sprintf("state folder %s is writable by %s (mode %04o): only its owner and root should write records there (chmod g-w,o-w %s)",
				d.Path(), who, uint32(fi.Mode().Perm())|modeBits(fi.Mode()), d.Path()))
		}
	}
	check(f.d)
	ds, spool, err := f.dsDirs(false)
	if err == nil {
		check(ds)
		check(spool)
		ds.Close()
		spool.Close()
	}
	return out
}

func modeBits(m os.FileMode) uint32 {
	var b uint32
	if m&os.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&os.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&os.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}
