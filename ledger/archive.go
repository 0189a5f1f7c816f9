package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Archiving keeps the log bounded as the working records are: the oldest
// entries move out of the live log into an archive file that the operator
// keeps (with the ceremony forms), and an entry of kind archived, chained
// after the rest, says what went: up to which entry, that entry's hash, the
// archive file's name and SHA-256, and the checksum of every ceremony and
// DS record as the working records held them then (as the log's first
// entry does for the records written before the log). The live log then
// begins with the entry after the cut, chained to the hash the archived
// entry names; ledger verify checks it from there, and with --archive
// FILE, from the first entry through the archive.
//
// The steps, each safe to stop after: verify the log (nothing that does
// not verify is archived); write the archive file (a new file, synced);
// append the archived entry; drop the archived entries from the live log.
// Stopped before the drop, the live log still holds them and verifies as
// before; ledger archive run again finishes the drop first.

// ArchiveFormat is the first line of an archive file.
const ArchiveFormat = "ods-keyguard/ledger-archive/1"

// archiveHeader is an archive file's first line; each line after it is a
// stored entry, from entry First through entry Through.
type archiveHeader struct {
	Format  string `json:"format"`
	Origin  string `json:"origin"`
	First   uint64 `json:"first"`
	Through uint64 `json:"through"`
	// Prev is the hash of the entry before First (zero for entry 1), Head
	// the hash of entry Through.
	Prev string `json:"prev"`
	Head string `json:"head"`
}

// archivedPayload is the archived entry's payload.
type archivedPayload struct {
	Origin  string `json:"origin"`
	First   uint64 `json:"first"`
	Through uint64 `json:"through"`
	Head    string `json:"head"`
	// ThroughTime is when entry Through was written: publish records from
	// then or before, which no entry of the live log names, are in the
	// archive.
	ThroughTime time.Time `json:"through_time"`
	File        string    `json:"file"`
	SHA256      string    `json:"sha256"`
	// Existing is every ceremony and DS record's checksum as the working
	// records held them when the entry was written.
	Existing existing `json:"existing"`
}

// ArchiveReport is what ledger archive did.
type ArchiveReport struct {
	// Archived is how many entries went into File (0: nothing to archive,
	// and Reason says why), From and Through the first and last.
	Archived uint64 `json:"archived"`
	From     uint64 `json:"from"`
	Through  uint64 `json:"through"`
	File     string `json:"file"`
	SHA256   string `json:"sha256"`
	// Entry is the archived entry's number; Live how many entries the live
	// log holds now.
	Entry  uint64 `json:"entry"`
	Live   uint64 `json:"live"`
	Reason string `json:"reason,omitempty"`
}

// WriteText prints the report for the operator.
func (r *ArchiveReport) WriteText(w io.Writer) {
	if r.Archived == 0 {
		fmt.Fprintf(w, "ledger archive: nothing archived: %s\n", r.Reason)
		return
	}
	what := fmt.Sprintf("entries %d-%d (%s)", r.From, r.Through, human.Count(int(r.Archived), "entry", "entries"))
	if r.From == r.Through {
		what = fmt.Sprintf("entry %d", r.From)
	}
	fmt.Fprintf(w, "ledger archive: %s written to %s (SHA-256 %s) and dropped from the live log, recorded in entry %d; the live log holds %s\n",
		what, r.File, r.SHA256, r.Entry, human.Count(int(r.Live), "entry", "entries"))
	fmt.Fprintf(w, "keep the archive file: ledger verify --archive %s checks the log from its first entry\n", r.File)
}

// Archive moves the entries written before before out of the live log into
// a new file out, at most up to the last entry but the newest few (the
// live log never empties), on state_dir at a segment's end. It refuses a
// log that does not verify.
func (l *Ledger) Archive(ctx context.Context, before time.Time, out string) (*ArchiveReport, error) {
	stored, err := l.b.readLog(ctx, 1, 0)
	if err != nil {
		return nil, err
	}
	done, err := l.finishArchive(ctx, stored)
	if err != nil {
		return nil, err
	}
	if done {
		if stored, err = l.b.readLog(ctx, 1, 0); err != nil {
			return nil, err
		}
	}
	rep, err := l.verifyStored(ctx, stored, nil)
	if err != nil {
		return nil, err
	}
	if len(rep.Problems) > 0 {
		return nil, &NotVerifiedError{l.Where(), rep.Problems[0]}
	}
	if len(stored) == 0 {
		return &ArchiveReport{Reason: "the log is empty"}, nil
	}
	first, err := decodeEntry(stored[0])
	if err != nil {
		return nil, err
	}
	through, err := l.b.archiveCut(ctx, stored, before)
	if err != nil {
		return nil, err
	}
	if through < first.Seq {
		return &ArchiveReport{Reason: fmt.Sprintf("no entry to archive was written before %s%s", before.UTC().Format(time.RFC3339), l.b.cutNote())}, nil
	}
	part := stored[:through-first.Seq+1]
	last, err := decodeEntry(part[len(part)-1])
	if err != nil {
		return nil, err
	}
	hdr := archiveHeader{Format: ArchiveFormat, Origin: rep.Origin, First: first.Seq, Through: through, Prev: part[0].Prev, Head: part[len(part)-1].Hash}
	sum, err := writeArchive(out, hdr, part)
	if err != nil {
		return nil, err
	}
	ex, err := l.existing(ctx)
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(out)
	p := archivedPayload{Origin: rep.Origin, First: first.Seq, Through: through, Head: hdr.Head, ThroughTime: last.Time,
		File: abs, SHA256: sum, Existing: ex}
	e, err := l.Append(ctx, KindArchived, p)
	if err != nil {
		return nil, fmt.Errorf("the archive %s is written, but its entry could not be: %w (nothing dropped; run ledger archive again)", out, err)
	}
	failpoint.Hit("archive-before-drop") // killed here, the next run drops them
	if err := l.b.dropLog(ctx, first.Seq, through); err != nil {
		return nil, fmt.Errorf("the archive %s and its entry %d are written, but the entries could not be dropped: %w (run ledger archive again to finish)", out, e.Seq, err)
	}
	return &ArchiveReport{Archived: through - first.Seq + 1, From: first.Seq, Through: through, File: abs, SHA256: sum,
		Entry: e.Seq, Live: e.Seq - through}, nil
}

// NotVerifiedError is a log that ledger archive refused: it does not
// verify.
type NotVerifiedError struct {
	Where string
	First Problem
}

func (e *NotVerifiedError) Error() string {
	return fmt.Sprintf("%s: the log does not verify (%s): nothing archived; see ledger verify", e.Where, e.First)
}

// finishArchive drops what an archived entry says went out, where a run
// stopped before it dropped them, in the live log as read (stored); done
// says it dropped some.
func (l *Ledger) finishArchive(ctx context.Context, stored []Stored) (done bool, err error) {
	if len(stored) == 0 {
		return false, nil
	}
	first, err := decodeEntry(stored[0])
	if err != nil {
		return false, nil // verify names it
	}
	a, _, ok := newestArchived(stored, func(p archivedPayload) bool { return p.First == first.Seq })
	if !ok {
		return false, nil
	}
	return true, l.b.dropLog(ctx, a.First, a.Through)
}

// existing is every ceremony and DS record's checksum now.
func (l *Ledger) existing(ctx context.Context) (existing, error) {
	open, _, history, err := l.b.loadCeremonies(ctx)
	if err != nil {
		return existing{}, err
	}
	evs, _, err := l.b.loadDS(ctx)
	if err != nil {
		return existing{}, err
	}
	r, err := begunRecord(l.opts, open, history, evs)
	if err != nil {
		return existing{}, err
	}
	return r.payload.(begunPayload).Existing, nil
}

// logBegins says where a log that ledger archive cut begins: for stored
// whose first entry is start (past 1), the archived entry that names the
// entries before it (its number) and the hash it chains to. ok is false
// when no archived entry names them: entries removed.
func logBegins(stored []Stored, start uint64) (a archivedPayload, seq uint64, prev Hash, ok bool) {
	a, seq, ok = newestArchived(stored, func(p archivedPayload) bool { return p.Through == start-1 })
	if !ok {
		return a, 0, prev, false
	}
	prev, err := ParseHash(a.Head)
	return a, seq, prev, err == nil
}

// errCutUnnamed is a live log that begins past entry 1 with no archived
// entry naming the entries before it: they were removed.
type errCutUnnamed struct{ start uint64 }

func (e errCutUnnamed) Error() string {
	return fmt.Sprintf("the log begins at entry %d, and no archived entry names entries 1-%d", e.start, e.start-1)
}

// beginning sets w to check the live log stored from where it begins:
// entry 1, or the entry after the cut that its archived entry a (entry
// seq) names, chained to the hash a names. a is nil for a log that begins
// at entry 1, or whose first entry does not decode (the walker names
// that); errCutUnnamed for a cut no archived entry names.
func beginning(stored []Stored, w *chainWalker) (a *archivedPayload, seq uint64, err error) {
	if len(stored) == 0 {
		return nil, 0, nil
	}
	first, err := decodeEntry(stored[0])
	if err != nil || first.Seq <= 1 {
		return nil, 0, nil
	}
	p, seq, prev, ok := logBegins(stored, first.Seq)
	if !ok {
		return nil, 0, errCutUnnamed{first.Seq}
	}
	w.next, w.prev = first.Seq, prev
	return &p, seq, nil
}

// newestArchived finds the newest archived entry among stored whose
// payload match accepts, with its entry number.
func newestArchived(stored []Stored, match func(archivedPayload) bool) (archivedPayload, uint64, bool) {
	for i := len(stored) - 1; i >= 0; i-- {
		if !bytes.Contains(stored[i].Body, []byte(`"kind":"`+KindArchived+`"`)) {
			continue
		}
		e, err := decodeEntry(stored[i])
		if err != nil || e.Kind != KindArchived {
			continue
		}
		var p archivedPayload
		if json.Unmarshal(e.Payload, &p) == nil && match(p) {
			return p, e.Seq, true
		}
	}
	return archivedPayload{}, 0, false
}

func decodeEntry(s Stored) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(s.Body, &e); err != nil {
		return e, fmt.Errorf("a log entry is not an entry (%v): run ods-keyguard ledger verify", err)
	}
	return e, nil
}

// writeArchive writes the archive file, new, synced: its header, then one
// stored entry a line. It returns the file's SHA-256.
func writeArchive(path string, hdr archiveHeader, list []Stored) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("archive file %s: %w", path, errors.Unwrap(err))
	}
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("archive file %s: %w", path, err)
	}
	b, _ := json.Marshal(hdr)
	w.Write(append(b, '\n'))
	for _, s := range list {
		b, err := json.Marshal(s)
		if err != nil {
			return fail(err)
		}
		w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("archive file %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// maxArchiveLine bounds one line of an archive file.
const maxArchiveLine = 64 << 20

// readArchive reads an archive file: its header and stored entries, and
// its SHA-256.
func readArchive(path string) (archiveHeader, []Stored, string, error) {
	var hdr archiveHeader
	f, err := os.Open(path)
	if err != nil {
		return hdr, nil, "", fmt.Errorf("archive %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	h := sha256.New()
	sc := bufio.NewScanner(io.TeeReader(f, h))
	sc.Buffer(make([]byte, 64<<10), maxArchiveLine)
	var list []Stored
	for n := 0; sc.Scan(); n++ {
		line := sc.Bytes()
		if n == 0 {
			if err := json.Unmarshal(line, &hdr); err != nil || hdr.Format != ArchiveFormat {
				return hdr, nil, "", fmt.Errorf("archive %s: not a ledger archive (its first line is not a %s header)", path, ArchiveFormat)
			}
			continue
		}
		var s Stored
		if err := json.Unmarshal(line, &s); err != nil || len(s.Body) == 0 {
			s = Stored{Body: append([]byte(nil), line...)}
		}
		list = append(list, s)
	}
	if err := sc.Err(); err != nil {
		return hdr, nil, "", fmt.Errorf("archive %s: %w", path, err)
	}
	if hdr.Format == "" {
		return hdr, nil, "", fmt.Errorf("archive %s: empty", path)
	}
	return hdr, list, hex.EncodeToString(h.Sum(nil)), nil
}
