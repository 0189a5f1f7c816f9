package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// An export is one ceremony as an auditor takes it away: its entries in
// the log, a signed checkpoint that covers them, and the proof that they
// are in the log that checkpoint signed: the hash of the entry before the
// ceremony's first, and the leaf hash of every other entry from there to
// the checkpoint's size. Anyone with the public key checks it, on another
// machine, without the ledger: ods-keyguard ledger verify-export, or the
// construction in docs/records.md.

// ExportFormat is the schema of an export (schema/ledger-export.json).
const ExportFormat = "ods-keyguard/ledger-export/1"

// Export is the document.
type Export struct {
	Schema     string      `json:"schema"`
	Ceremony   string      `json:"ceremony"`
	Origin     string      `json:"origin"`
	Checkpoint string      `json:"checkpoint"` // the signed note
	Prev       string      `json:"prev"`       // the hash of the entry before the first below
	Proof      []ProofItem `json:"proof"`      // every entry from the ceremony's first to the checkpoint's size
}

// ProofItem is one entry of the proof: the ceremony's own entries whole,
// the others by their leaf hash alone.
type ProofItem struct {
	Seq   uint64  `json:"seq"`
	Leaf  string  `json:"leaf,omitempty"`
	Entry *Stored `json:"entry,omitempty"`
}

// Export writes the export of ceremony id. The checkpoint is the newest
// stored one that covers the ceremony's last entry, else one signed now
// (with the configured key).
func (l *Ledger) Export(ctx context.Context, id string, archives ...string) (*Export, error) {
	stored, start, w, origin, err := l.readChain(ctx, archives)
	if err != nil {
		return nil, err
	}
	startPrev := w.prev
	var first, last uint64
	var firstStatus string
	for _, s := range stored {
		e, err := w.step(s)
		if err != nil {
			return nil, fmt.Errorf("%s: log %w: not exported (ods-keyguard ledger verify)", l.Where(), err)
		}
		switch e.Kind {
		case KindBegun:
			var b begunPayload
			json.Unmarshal(e.Payload, &b)
			origin = b.Origin
		case KindCeremony, KindCeremonyDropped:
			if ceremonyID(e) == id {
				if first == 0 {
					first, firstStatus = e.Seq, ceremonyStatus(e)
				}
				last = e.Seq
			}
		}
	}
	if first != 0 && start > 1 && firstStatus != Preparing && firstStatus != Restored {
		// Its first steps are in the archive: an export of the rest would
		// be a part passed off as the whole.
		return nil, fmt.Errorf("ceremony %s: its first steps are before entry %d, where the live log of %s begins: export it with --archive FILE (the archive files of entries 1-%d)", id, start, l.Where(), start-1)
	}
	if first == 0 {
		if start > 1 {
			return nil, fmt.Errorf("ceremony %s: not in the live log of %s, which begins at entry %d: if it is older, export it with --archive FILE (the archive files of entries 1-%d)", id, l.Where(), start, start-1)
		}
		return nil, fmt.Errorf("ceremony %s: not in the log of %s", id, l.Where())
	}
	cp, err := l.covering(ctx, last, w.heads)
	if err != nil {
		return nil, fmt.Errorf("ceremony %s: %w", id, err)
	}
	if cp.Size > start-1+uint64(len(stored)) {
		// Signed just now, after entries this read did not see.
		more, err := l.b.readLog(ctx, start+uint64(len(stored)), 0)
		if err != nil {
			return nil, err
		}
		stored = append(stored, more...)
	}
	if cp.Size > start-1+uint64(len(stored)) {
		return nil, fmt.Errorf("ceremony %s: checkpoint %d is past the log's end (ods-keyguard ledger verify)", id, cp.Size)
	}
	x := &Export{Schema: ExportFormat, Ceremony: id, Origin: origin, Checkpoint: cp.Note, Proof: []ProofItem{}}
	x.Prev = startPrev.String()
	if first > start {
		x.Prev = stored[first-start-1].Hash
	}
	for seq := first; seq <= cp.Size; seq++ {
		s := stored[seq-start]
		var e Entry
		json.Unmarshal(s.Body, &e)
		if (e.Kind == KindCeremony || e.Kind == KindCeremonyDropped) && ceremonyID(e) == id {
			s := s
			x.Proof = append(x.Proof, ProofItem{Seq: seq, Entry: &s})
			continue
		}
		x.Proof = append(x.Proof, ProofItem{Seq: seq, Leaf: LeafHash(s.Body).String()})
	}
	return x, nil
}

// readChain reads the log (after the entries of archives, when given) and
// a walker set to check it from its first entry: entry 1, or the entry
// after the cut that the newest archived entry names, chained to the hash
// it names (origin is that entry's).
func (l *Ledger) readChain(ctx context.Context, archives []string) (stored []Stored, start uint64, w *chainWalker, origin string, err error) {
	if stored, err = l.b.readLog(ctx, 1, 0); err != nil {
		return nil, 0, nil, "", err
	}
	if len(archives) > 0 {
		r := &VerifyReport{}
		if stored, err = l.withArchives(r, stored, archives); err != nil {
			return nil, 0, nil, "", err
		}
		if len(r.Problems) > 0 {
			return nil, 0, nil, "", errors.New(r.Problems[0].String())
		}
	}
	w = newWalker(true)
	a, _, err := beginning(stored, w)
	if err != nil {
		return nil, 0, nil, "", fmt.Errorf("%s: %w: run ods-keyguard ledger verify", l.Where(), err)
	}
	if a != nil {
		origin = a.Origin
	}
	return stored, w.next, w, origin, nil
}

// covering finds a stored checkpoint that covers entry seq and matches the
// log, or signs one.
func (l *Ledger) covering(ctx context.Context, seq uint64, heads map[uint64]Hash) (*Checkpoint, error) {
	notes, err := l.b.checkpoints(ctx, false)
	if err != nil {
		return nil, err
	}
	vs, _ := Verifiers(l.opts.Keys)
	for i := len(notes) - 1; i >= 0; i-- {
		n := notes[i]
		if n.Err != nil {
			continue
		}
		var text string
		if len(l.opts.Keys) > 0 {
			nt, err := note.Open([]byte(n.Text), vs)
			if err != nil {
				continue
			}
			text = nt.Text
		} else {
			text = noteBody(n.Text)
		}
		origin, size, h, err := parseCheckpointText(text)
		if err != nil || size < seq || heads[size] != h {
			continue
		}
		return &Checkpoint{Origin: origin, Size: size, Hash: h, Note: n.Text}, nil
	}
	c, err := l.Checkpoint(ctx)
	if errors.Is(err, ErrNoSigningKey) {
		return nil, errors.New("no signed checkpoint covers its entries, and no signing key is configured to sign one: set [ledger] signing_key (ods-keyguard ledger keygen)")
	}
	return c, err
}

// ceremonyID is the ceremony a ceremony entry is about.
// ceremonyStatus is the status a ceremony entry records ("" for a
// dropped one).
func ceremonyStatus(e Entry) string {
	var p ceremonyPayload
	var c struct{ Status string }
	if e.Kind == KindCeremony && json.Unmarshal(e.Payload, &p) == nil {
		json.Unmarshal(p.Ceremony, &c)
	}
	return c.Status
}

func ceremonyID(e Entry) string {
	if e.Kind == KindCeremonyDropped {
		var p droppedPayload
		json.Unmarshal(e.Payload, &p)
		return p.ID
	}
	var p ceremonyPayload
	var c struct{ ID string }
	if json.Unmarshal(e.Payload, &p) == nil {
		json.Unmarshal(p.Ceremony, &c)
	}
	return c.ID
}

// ExportReport is what verify-export established.
type ExportReport struct {
	Ceremony   string       `json:"ceremony"`
	Origin     string       `json:"origin"`
	Checkpoint Checkpoint   `json:"checkpoint"`
	SignedBy   []string     `json:"signed_by"`
	Steps      []ExportStep `json:"steps"`
	// Final is the ceremony's record after its last step.
	Final *Ceremony `json:"final"`
}

// ExportStep is one step of the ceremony, as its entry recorded it.
type ExportStep struct {
	Entry uint64    `json:"entry"`
	Time  time.Time `json:"time"`
	Host  string    `json:"host"`
	Step  string    `json:"step"`
}

// VerifyExport checks an export with the public keys alone: the
// checkpoint's signature, and that the ceremony's entries chain up to the
// hash it signed. An error says the first thing that does not hold.
func VerifyExport(r io.Reader, keys []string) (*ExportReport, error) {
	var x Export
	dec := json.NewDecoder(io.LimitReader(r, 256<<20))
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("not an export of ods-keyguard (%v)", err)
	}
	if x.Schema != ExportFormat {
		return nil, fmt.Errorf("schema %q, want %q", x.Schema, ExportFormat)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key given: the checkpoint's signature cannot be checked")
	}
	vs, err := Verifiers(keys)
	if err != nil {
		return nil, err
	}
	nt, err := note.Open([]byte(x.Checkpoint), vs)
	if err != nil {
		if names := signers(err); names != "" {
			return nil, fmt.Errorf("checkpoint: signed by key %s, not by the key given", names)
		}
		return nil, fmt.Errorf("checkpoint: %v", err)
	}
	origin, size, head, err := parseCheckpointText(nt.Text)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if origin != x.Origin {
		return nil, fmt.Errorf("checkpoint of log %q, the export says %q", origin, x.Origin)
	}
	rep := &ExportReport{Ceremony: x.Ceremony, Origin: origin, Checkpoint: Checkpoint{Origin: origin, Size: size, Hash: head, Note: x.Checkpoint}, Steps: []ExportStep{}}
	for _, s := range nt.Sigs {
		rep.SignedBy = append(rep.SignedBy, s.Name)
	}
	h, err := ParseHash(x.Prev)
	if err != nil {
		return nil, fmt.Errorf("prev: %w", err)
	}
	if len(x.Proof) == 0 {
		return nil, errors.New("the proof is empty")
	}
	next := x.Proof[0].Seq
	for _, p := range x.Proof {
		if p.Seq != next {
			return nil, fmt.Errorf("proof: entry %d where entry %d should be", p.Seq, next)
		}
		next++
		var leaf Hash
		if p.Entry == nil {
			if leaf, err = ParseHash(p.Leaf); err != nil {
				return nil, fmt.Errorf("proof: entry %d: %w", p.Seq, err)
			}
			h = ChainHash(h, leaf)
			continue
		}
		var body bytes.Buffer
		if err := json.Compact(&body, p.Entry.Body); err != nil {
			return nil, fmt.Errorf("entry %d: not an entry (%v)", p.Seq, err)
		}
		var e Entry
		if err := json.Unmarshal(body.Bytes(), &e); err != nil || e.Seq != p.Seq {
			return nil, fmt.Errorf("entry %d: not the entry it is given as", p.Seq)
		}
		if id := ceremonyID(e); id != x.Ceremony {
			return nil, fmt.Errorf("entry %d: of ceremony %q, not %q", p.Seq, id, x.Ceremony)
		}
		h = ChainHash(h, LeafHash(body.Bytes()))
		if p.Entry.Hash != h.String() {
			return nil, fmt.Errorf("entry %d: does not chain (changed)", p.Seq)
		}
		step := ExportStep{Entry: e.Seq, Time: e.Time, Host: e.Host, Step: "dropped"}
		if e.Kind == KindCeremony {
			var cp ceremonyPayload
			json.Unmarshal(e.Payload, &cp)
			step.Step = cp.Step
			var c Ceremony
			if json.Unmarshal(cp.Ceremony, &c) == nil {
				rep.Final = &c
			}
		}
		rep.Steps = append(rep.Steps, step)
	}
	if next-1 != size {
		return nil, fmt.Errorf("the proof ends at entry %d, the checkpoint signed %s", next-1, human.Count(int(size), "entry"))
	}
	if h != head {
		return nil, fmt.Errorf("the entries do not chain to the hash the checkpoint signed: changed")
	}
	if len(rep.Steps) == 0 {
		return nil, fmt.Errorf("no entry of ceremony %s in the export", x.Ceremony)
	}
	return rep, nil
}

// WriteText prints what an auditor checks: the checkpoint, the steps, and
// the ceremony's record.
func (r *ExportReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "verify-export: ceremony %s verified: %s, in log %s up to checkpoint %s, signed by %s\n",
		r.Ceremony, human.Count(len(r.Steps), "step"), r.Origin, r.Checkpoint.Short(), strings.Join(r.SignedBy, ", "))
	for _, s := range r.Steps {
		fmt.Fprintf(w, "STEP entry %d %s on %s: %s\n", s.Entry, s.Time.UTC().Format(time.RFC3339), s.Host, s.Step)
	}
	if c := r.Final; c != nil {
		writeCeremony(w, c)
	}
}

// writeCeremony prints who, what, onto what, witnessed by whom.
func writeCeremony(w io.Writer, c *Ceremony) {
	fmt.Fprintf(w, "CEREMONY %s repository %s: %s\n", c.ID, c.Repository, c.Status)
	fmt.Fprintf(w, "PREPARED %s by %s%s\n", c.Prepared.UTC().Format(time.RFC3339), c.Operator, witnessText(c.Witnesses))
	if !c.Ended.IsZero() {
		fmt.Fprintf(w, "ENDED %s by %s%s\n", c.Ended.UTC().Format(time.RFC3339), c.EndOperator, witnessText(c.EndWitnesses))
	}
	for _, t := range c.Tokens {
		fmt.Fprintf(w, "TOKEN %s %q label %q serial %s\n", t.Kind, t.Name, t.Label, t.Serial)
	}
	if t := c.BackupToken; t != nil {
		fmt.Fprintf(w, "BACKUP TOKEN %q label %q serial %s\n", t.Name, t.Label, t.Serial)
	}
	for _, k := range c.Keys {
		zones := "no zone (pool)"
		if len(k.Zones) > 0 {
			zones = "zones " + strings.Join(k.Zones, ",")
		}
		fmt.Fprintf(w, "KEY %s %s %s, %s\n", k.Locator, k.Role, k.Type, zones)
	}
	for _, ch := range c.Checks {
		fmt.Fprintf(w, "CHECKED %s\n", ch)
	}
}

func witnessText(ws []string) string {
	if len(ws) == 0 {
		return ", no witness named"
	}
	return ", witnessed by " + strings.Join(ws, ", ")
}

// signers names the keys that signed a note none of the known keys
// verifies, from note.Open's error; "" when it does not say.
func signers(err error) string {
	var unknown *note.UnknownVerifierError
	if errors.As(err, &unknown) {
		return unknown.Name
	}
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) && unverified.Note != nil {
		var names []string
		for _, s := range unverified.Note.UnverifiedSigs {
			names = append(names, s.Name)
		}
		return strings.Join(names, ", ")
	}
	return ""
}
