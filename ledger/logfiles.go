package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// The log in state_dir:
//
//	log/NNNNNNNNNNNNNNNNNNNN.log   segments, named by their first entry's
//	                              number, one stored entry a line; full
//	                              at segmentEntries, never written again
//	log/checkpoints/N.note        the signed checkpoints, by size
//
// An append rewrites the last segment whole (statedir.WriteAtomic): a
// crash leaves it as it was or with the new entries, never a part of a
// line. Appends take the flock of the log folder for as long as they
// write: milliseconds, so a hook never waits behind a ceremony.
const (
	logDir         = "log"
	checkpointDir  = "checkpoints"
	segmentEntries = 1024
	maxSegmentFile = 256 << 20
	maxNoteFile    = 64 << 10
)

func segmentName(first uint64) string { return fmt.Sprintf("%020d.log", first) }

func (f *files) logFolder(create bool) (*statedir.Dir, error) {
	if f.d == nil {
		return nil, os.ErrNotExist
	}
	return f.d.Sub(logDir, create)
}

// lockLog takes the flock of the log folder, waiting up to lock_timeout.
func (f *files) lockLog(ctx context.Context, d *statedir.Dir) (func(), error) {
	wait := f.opts.LockWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(d.Fd(), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(d.Fd(), syscall.LOCK_UN) }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("log lock %s: %w", d.Path(), err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("log lock %s: held by another writer for over %s", d.Path(), wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readSegment reads one segment's stored entries. A line that is not a
// stored entry is kept with its text as the body, for verify to name.
func readSegment(d *statedir.Dir, name string) ([]Stored, error) {
	b, err := d.Read(name, maxSegmentFile)
	if err != nil {
		return nil, fileError(err)
	}
	var out []Stored
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var s Stored
		if err := json.Unmarshal(line, &s); err != nil || len(s.Body) == 0 {
			s = Stored{Body: append([]byte(nil), line...)}
		}
		out = append(out, s)
	}
	return out, nil
}

func encodeSegment(list []Stored) ([]byte, error) {
	var buf bytes.Buffer
	for _, s := range list {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// segmentFirst reads a segment's first entry number from its name.
func segmentFirst(name string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(name, ".log"), 10, 64)
	return n
}

// lastOf reads the last entry's number and hash from a segment.
func lastOf(list []Stored) (uint64, Hash, error) {
	if len(list) == 0 {
		return 0, Hash{}, nil
	}
	s := list[len(list)-1]
	var e Entry
	if err := json.Unmarshal(s.Body, &e); err != nil {
		return 0, Hash{}, fmt.Errorf("the log's last entry is not an entry (%v): run ods-keyguard ledger verify", err)
	}
	h, err := ParseHash(s.Hash)
	if err != nil {
		return 0, Hash{}, fmt.Errorf("the log's last entry %d has no hash: run ods-keyguard ledger verify", e.Seq)
	}
	return e.Seq, h, nil
}

// appendLog appends recs to the log, and starts the log with its first
// entry when it is empty.
func (f *files) appendLog(ctx context.Context, recs []record) ([]Stored, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	d, err := f.logFolder(true)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	unlock, err := f.lockLog(ctx, d)
	if err != nil {
		return nil, err
	}
	defer unlock()
	names, err := d.List(".log")
	if err != nil {
		return nil, err
	}
	var cur []Stored
	curName := ""
	if len(names) > 0 {
		curName = names[len(names)-1]
		if cur, err = readSegment(d, curName); err != nil {
			return nil, err
		}
	}
	seq, prev, err := lastOf(cur)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", d.Path(), err)
	}
	if seq == 0 && len(names) == 0 {
		g, err := f.genesis(ctx)
		if err != nil {
			return nil, err
		}
		recs = append([]record{g}, recs...)
	}
	added, _, err := entries(recs, seq+1, prev, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	// Fill the current segment, then new ones.
	next := seq + 1
	for rest := added; len(rest) > 0; {
		if curName == "" || len(cur) >= segmentEntries {
			curName, cur = segmentName(next), nil
		}
		n := min(segmentEntries-len(cur), len(rest))
		cur = append(cur, rest[:n]...)
		rest, next = rest[n:], next+uint64(n)
		b, err := encodeSegment(cur)
		if err != nil {
			return nil, err
		}
		if err := d.WriteAtomic(curName, b, statedir.FileMode); err != nil {
			return nil, fileError(err)
		}
	}
	return added, nil
}

// readLog reads the stored entries from entry number from to number to
// (0: the end), in order.
func (f *files) readLog(ctx context.Context, from, to uint64) ([]Stored, error) {
	d, err := f.logFolder(false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.List(".log")
	if err != nil {
		return nil, err
	}
	var out []Stored
	for i, n := range names {
		if i+1 < len(names) && segmentFirst(names[i+1]) <= from {
			continue // wholly before from
		}
		if to > 0 && segmentFirst(n) > to {
			break
		}
		list, err := readSegment(d, n)
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			if from > 1 || to > 0 {
				var e Entry
				if json.Unmarshal(s.Body, &e) == nil && (e.Seq < from || to > 0 && e.Seq > to) {
					continue
				}
			}
			out = append(out, s)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (f *files) putCheckpoint(ctx context.Context, c Checkpoint) error {
	d, err := f.logFolder(true)
	if err != nil {
		return err
	}
	defer d.Close()
	cd, err := d.Sub(checkpointDir, true)
	if err != nil {
		return err
	}
	defer cd.Close()
	err = cd.Create(fmt.Sprintf("%020d.note", c.Size), []byte(c.Note), statedir.FileMode)
	if errors.Is(err, os.ErrExist) {
		return nil // this size is signed already
	}
	return fileError(err)
}

func (f *files) checkpoints(ctx context.Context, latest bool) ([]storedNote, error) {
	d, err := f.logFolder(false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	cd, err := d.Sub(checkpointDir, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file") {
			return nil, nil
		}
		return nil, err
	}
	defer cd.Close()
	names, err := cd.List(".note")
	if err != nil {
		return nil, err
	}
	if latest && len(names) > 1 {
		names = names[len(names)-1:]
	}
	var out []storedNote
	for _, n := range names {
		b, err := cd.Read(n, maxNoteFile)
		if err != nil {
			out = append(out, storedNote{Where: cd.Name(n), Err: fileError(err)})
			continue
		}
		out = append(out, storedNote{Where: cd.Name(n), Text: string(b)})
	}
	return out, nil
}

// storedNote is a checkpoint as stored: where, and its text (or why it
// could not be read).
type storedNote struct {
	Where string
	Text  string
	Err   error
}

// genesis is the log's first entry: the origin, and the checksum of every
// record written before the log existed.
func (f *files) genesis(ctx context.Context) (record, error) {
	open, _, history, err := f.loadCeremonies(ctx)
	if err != nil {
		return record{}, err
	}
	evs, _, err := f.loadDS(ctx)
	if err != nil {
		return record{}, err
	}
	return begunRecord(f.opts, open, history, evs)
}

// archiveCut is the last entry of the newest full segment whose entries
// were all written before before: state_dir archives whole segments, and
// never the last one (the one appends write).
func (f *files) archiveCut(ctx context.Context, stored []Stored, before time.Time) (uint64, error) {
	d, err := f.logFolder(false)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.List(".log")
	if err != nil {
		return 0, err
	}
	if len(stored) == 0 || len(names) < 2 {
		return 0, nil
	}
	first, err := decodeEntry(stored[0])
	if err != nil {
		return 0, err
	}
	var cut uint64
	for i := 0; i+1 < len(names); i++ {
		last := segmentFirst(names[i+1]) - 1
		if last < first.Seq || last-first.Seq >= uint64(len(stored)) {
			continue
		}
		e, err := decodeEntry(stored[last-first.Seq])
		if err != nil || e.Seq != last {
			return 0, fmt.Errorf("log %s: segment %s does not end where %s begins: run ods-keyguard ledger verify", d.Path(), names[i], names[i+1])
		}
		if !e.Time.Before(before) {
			break
		}
		cut = last
	}
	return cut, nil
}

func (f *files) cutNote() string {
	return fmt.Sprintf(" (state_dir archives whole segments of %s, never the newest)", human.Count(segmentEntries, "entry", "entries"))
}

// dropLog removes the segments that hold only entries first through
// through, under the log's lock.
func (f *files) dropLog(ctx context.Context, first, through uint64) error {
	d, err := f.logFolder(false)
	if err != nil {
		return err
	}
	defer d.Close()
	unlock, err := f.lockLog(ctx, d)
	if err != nil {
		return err
	}
	defer unlock()
	names, err := d.List(".log")
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(names); i++ {
		if segmentFirst(names[i]) >= first && segmentFirst(names[i+1])-1 <= through {
			if err := d.Remove(names[i]); err != nil {
				return fileError(err)
			}
		}
	}
	return nil
}

func (f *files) logStart(ctx context.Context) (uint64, error) {
	d, err := f.logFolder(false)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.List(".log")
	if err != nil || len(names) == 0 {
		return 0, err
	}
	return segmentFirst(names[0]), nil
}
