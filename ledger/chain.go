package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The log: every record ods-keyguard writes is an entry of one append-only
// log whose entries are chained by hash (see the package doc for the
// construction, and docs/records.md for an auditor's view of it).

// Kinds of entries. A kind names what happened; its payload says the rest.
const (
	// KindBegun starts the log: its payload holds the origin and, for the
	// records written before the log existed, their checksums.
	KindBegun = "begun"
	// KindCeremony is a step of a backup ceremony (or a restore): the
	// ceremony's whole record as the step left it.
	KindCeremony = "ceremony"
	// KindCeremonyDropped is an open ceremony forgotten (prepare failed).
	KindCeremonyDropped = "ceremony-dropped"
	// KindDS is a DS event: what a hook, release, drop or parent sync did.
	KindDS = "ds"
	// KindDSCompacted names the DS events that compaction dropped from the
	// working records (their entries stay in the log).
	KindDSCompacted = "ds-compacted"
	// KindRestoreCheck is a recover verify of HSMs that show no restore.
	KindRestoreCheck = "restore-check"
	// KindPrunePool is recover prune-pool --apply, before and after.
	KindPrunePool = "prune-pool"
	// KindPINRefused is a PIN a token refused (never the PIN).
	KindPINRefused = "pin-refused"
	// KindPublish is a decision of the publish gate (or an operator's act
	// on it): the publish record, byte for byte what the working records
	// hold.
	KindPublish = "publish"
	// KindPublishDropped names the publish records that the bound per zone
	// dropped from the working records (their entries stay in the log).
	KindPublishDropped = "publish-dropped"
	// KindArchived says which entries ledger archive moved out of the live
	// log, into which file, and the records' checksums then (archive.go).
	KindArchived = "archived"
)

// Entry is one record of the log.
type Entry struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Host    string          `json:"host,omitempty"`
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

// Stored is an entry as the log keeps it: its body (the Entry in compact
// JSON, exactly the bytes that are hashed), the hash of the entry before
// it and its own hash. Verification reads Body, never a re-encoding.
type Stored struct {
	Prev string          `json:"prev"`
	Hash string          `json:"hash"`
	Body json.RawMessage `json:"entry"`
}

// HashSize is the size of every hash of the log.
const HashSize = sha256.Size

// Hash is a SHA-256 of the log.
type Hash [HashSize]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a Hash in hexadecimal.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		return h, fmt.Errorf("%q is not a SHA-256 in hexadecimal", s)
	}
	copy(h[:], b)
	return h, nil
}

// LeafHash is the hash of an entry's body:
// SHA-256("ods-keyguard/ledger/entry\n" || body).
func LeafHash(body []byte) Hash {
	s := sha256.New()
	s.Write([]byte("ods-keyguard/ledger/entry\n"))
	s.Write(body)
	var h Hash
	copy(h[:], s.Sum(nil))
	return h
}

// ChainHash is the hash of the entry whose leaf hash is leaf after the
// entry whose hash is prev: SHA-256("ods-keyguard/ledger/chain\n" ||
// prev || leaf). The first entry's prev is 32 zero bytes.
func ChainHash(prev, leaf Hash) Hash {
	s := sha256.New()
	s.Write([]byte("ods-keyguard/ledger/chain\n"))
	s.Write(prev[:])
	s.Write(leaf[:])
	var h Hash
	copy(h[:], s.Sum(nil))
	return h
}

// newStored makes the stored form of e after prev.
func newStored(e Entry, prev Hash) (Stored, Hash, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return Stored{}, Hash{}, err
	}
	h := ChainHash(prev, LeafHash(body))
	return Stored{Prev: prev.String(), Hash: h.String(), Body: body}, h, nil
}

// record is what a writer asks to append: a kind and a payload.
type record struct {
	kind    string
	payload any
}

// entries turns records into entries from seq on, stamped now by this
// host, chained after prev.
func entries(recs []record, seq uint64, prev Hash, now time.Time) ([]Stored, Hash, error) {
	var out []Stored
	for i, r := range recs {
		p, ok := r.payload.(json.RawMessage)
		if !ok {
			var err error
			if p, err = json.Marshal(r.payload); err != nil {
				return nil, prev, fmt.Errorf("ledger entry %s: %w", r.kind, err)
			}
		}
		var c bytes.Buffer
		if err := json.Compact(&c, p); err != nil {
			return nil, prev, fmt.Errorf("ledger entry %s: %w", r.kind, err)
		}
		s, h, err := newStored(Entry{Seq: seq + uint64(i), Time: now, Host: host(), Kind: r.kind, Payload: c.Bytes()}, prev)
		if err != nil {
			return nil, prev, err
		}
		out = append(out, s)
		prev = h
	}
	return out, prev, nil
}

// Mismatch is the first entry of the log that does not match: its
// sequence number and why.
type Mismatch struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func (m *Mismatch) Error() string { return fmt.Sprintf("entry %d: %s", m.Seq, m.Reason) }

// chainWalker checks stored entries one by one, in the log's order.
type chainWalker struct {
	next  uint64 // the sequence number the next entry must have
	prev  Hash
	heads map[uint64]Hash // seq -> hash, for the checkpoints (nil: not kept)
}

func newWalker(keep bool) *chainWalker {
	w := &chainWalker{next: 1}
	if keep {
		w.heads = map[uint64]Hash{}
	}
	return w
}

// step checks s, the next entry of the log, and returns it decoded.
func (w *chainWalker) step(s Stored) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(s.Body, &e); err != nil {
		return e, &Mismatch{w.next, "not an entry (" + err.Error() + ")"}
	}
	switch {
	case e.Seq < w.next:
		return e, &Mismatch{w.next, fmt.Sprintf("out of order: entry %d where entry %d should follow entry %d (reordered, or copied in by hand)", e.Seq, w.next, w.next-1)}
	case e.Seq > w.next:
		return e, &Mismatch{w.next, fmt.Sprintf("missing: the log goes from entry %d to entry %d (removed)", w.next-1, e.Seq)}
	}
	if s.Prev != w.prev.String() {
		return e, &Mismatch{e.Seq, "does not follow the entry before it: its prev is not that entry's hash (changed, removed or inserted by hand)"}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, s.Body); err != nil {
		return e, &Mismatch{e.Seq, "not an entry (" + err.Error() + ")"}
	}
	h := ChainHash(w.prev, LeafHash(compact.Bytes()))
	if s.Hash != h.String() {
		return e, &Mismatch{e.Seq, "its content does not match its hash (changed by hand)"}
	}
	if w.heads != nil {
		w.heads[e.Seq] = h
	}
	w.prev = h
	w.next++
	return e, nil
}

// Checkpoint is a signed statement of the log's size and head hash, in the
// C2SP tlog-checkpoint shape: origin, size, hash (base64), as the body of a
// C2SP signed note.
type Checkpoint struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Hash   Hash   `json:"-"`
	// Note is the signed note: the body and its signature lines.
	Note string `json:"note"`
}

// MarshalJSON writes the hash in hexadecimal and the short form.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	type plain Checkpoint
	return json.Marshal(struct {
		plain
		Hash  string `json:"hash"`
		Short string `json:"short"`
	}{plain(c), c.Hash.String(), c.Short()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	type plain Checkpoint
	var doc struct {
		plain
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	*c = Checkpoint(doc.plain)
	if doc.Hash != "" {
		h, err := ParseHash(doc.Hash)
		if err != nil {
			return err
		}
		c.Hash = h
	}
	return nil
}

// checkpointText is the note's body.
func checkpointText(origin string, size uint64, h Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(h[:]))
}

// parseCheckpointText reads a note's body.
func parseCheckpointText(text string) (origin string, size uint64, h Hash, err error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", 0, h, errors.New("not a checkpoint: want origin, size and hash lines")
	}
	size, err = strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return "", 0, h, errors.New("not a checkpoint: the second line is not a size")
	}
	b, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(b) != HashSize {
		return "", 0, h, errors.New("not a checkpoint: the third line is not a SHA-256 in base64")
	}
	copy(h[:], b)
	return lines[0], size, h, nil
}

// Short is the checkpoint's short form, to read aloud and write on the
// ceremony form: the entry count and the first 20 base32 characters (100
// bits) of the head hash in groups of four, "ledger 1234
// ABCD-EFGH-IJKL-MNOP-QRST".
func (c Checkpoint) Short() string { return ShortForm(c.Size, c.Hash) }

// ShortForm is Checkpoint.Short for a size and a hash.
func ShortForm(size uint64, h Hash) string {
	s := base32.StdEncoding.EncodeToString(h[:])[:20]
	return fmt.Sprintf("ledger %d %s-%s-%s-%s-%s", size, s[0:4], s[4:8], s[8:12], s[12:16], s[16:20])
}
