package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Append adds one record to the log: kind names what happened, payload
// (any value that encodes as a JSON object) says the rest. It is the one
// way into the log for records that have no working copy of their own:
// prune-pool, PIN refusals, restore checks, and the publish gate's
// decisions. A checkpoint is signed after it where a signing key is
// configured. It returns the entry as appended.
func (l *Ledger) Append(ctx context.Context, kind string, payload any) (Entry, error) {
	if kind == "" || strings.ContainsAny(kind, " \n\t") {
		return Entry{}, fmt.Errorf("ledger entry: kind %q: want one word", kind)
	}
	stored, err := l.b.appendLog(ctx, []record{{kind, payload}})
	if err != nil {
		return Entry{}, err
	}
	l.autoCheckpoint(ctx)
	var e Entry
	if len(stored) > 0 {
		json.Unmarshal(stored[len(stored)-1].Body, &e)
	}
	return e, nil
}

// AppendAll adds several records of one kind in one write (a decision
// made for many zones at once), in order; one checkpoint after them all.
func (l *Ledger) AppendAll(ctx context.Context, kind string, payloads []any) error {
	if kind == "" || strings.ContainsAny(kind, " \n\t") {
		return fmt.Errorf("ledger entry: kind %q: want one word", kind)
	}
	recs := make([]record, len(payloads))
	for i, p := range payloads {
		recs[i] = record{kind, p}
	}
	if _, err := l.b.appendLog(ctx, recs); err != nil {
		return err
	}
	l.autoCheckpoint(ctx)
	return nil
}

// ErrNoSigningKey is a checkpoint asked of a ledger with no signing key.
var ErrNoSigningKey = errors.New("no signing key configured ([ledger] signing_key): checkpoints are not signed")

// head reads the log's origin (from its first entry), its size and its
// head hash. It checks the entries after the newest checkpoint against
// it, so that a log changed since is not signed again (ledger verify
// checks the whole), and reads no more than those.
func (l *Ledger) head(ctx context.Context) (origin string, size uint64, h Hash, err error) {
	start, err := l.b.logStart(ctx)
	if err != nil || start == 0 {
		return "", 0, h, err
	}
	first, err := l.b.readLog(ctx, start, start)
	if err != nil || len(first) == 0 {
		return "", 0, h, err
	}
	var e1 Entry
	if err := json.Unmarshal(first[0].Body, &e1); err != nil || e1.Seq != start || (start == 1 && e1.Kind != KindBegun) {
		return "", 0, h, fmt.Errorf("%s: the log's first entry is not its start: run ods-keyguard ledger verify", l.Where())
	}
	w := newWalker(false)
	w.next = start
	from, fromCheckpoint := start, false
	if start == 1 {
		var b begunPayload
		json.Unmarshal(e1.Payload, &b)
		origin = b.Origin
	}
	if notes, err := l.b.checkpoints(ctx, true); err == nil && len(notes) == 1 && notes[0].Err == nil {
		if o, n, ch, err := parseCheckpointText(noteBody(notes[0].Text)); err == nil && n >= start {
			from, origin, fromCheckpoint = n, o, true
			w.next, w.prev = n+1, ch
		}
	}
	rest, err := l.b.readLog(ctx, from, 0)
	if err != nil {
		return "", 0, h, err
	}
	if !fromCheckpoint && start > 1 {
		// An archived log, no checkpoint since: it begins where its
		// archived entry says, chained to the hash it names.
		a, _, ph, ok := logBegins(rest, start)
		if !ok {
			return "", 0, h, fmt.Errorf("%s: the log begins at entry %d, and no archived entry names the entries before: run ods-keyguard ledger verify", l.Where(), start)
		}
		w.prev, origin = ph, a.Origin
	}
	for i, s := range rest {
		if i == 0 && fromCheckpoint {
			// The newest checkpoint's entry: still what it signed?
			if stored, err := ParseHash(s.Hash); err != nil || stored != w.prev {
				return "", 0, h, fmt.Errorf("%s: log entry %d is not what its checkpoint signed: run ods-keyguard ledger verify", l.Where(), from)
			}
			continue
		}
		if _, err := w.step(s); err != nil {
			return "", 0, h, fmt.Errorf("%s: log %w: run ods-keyguard ledger verify", l.Where(), err)
		}
	}
	if fromCheckpoint && len(rest) == 0 {
		return "", 0, h, fmt.Errorf("%s: the log is shorter than its newest checkpoint (%s): run ods-keyguard ledger verify", l.Where(), human.Count(int(from), "entry"))
	}
	return origin, w.next - 1, w.prev, nil
}

// Checkpoint signs the log as it is now (its size and head hash) with the
// configured key, stores the checkpoint and returns it. The log is walked
// whole first: a log that does not verify is not signed.
func (l *Ledger) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	if l.opts.Signer == nil {
		return nil, ErrNoSigningKey
	}
	signer, err := l.opts.Signer(ctx)
	if err != nil {
		return nil, err
	}
	origin, size, h, err := l.head(ctx)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("%s: the log is empty: nothing to sign", l.Where())
	}
	text := checkpointText(origin, size, h)
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint with key %s: %w", signer.Name(), err)
	}
	c := Checkpoint{Origin: origin, Size: size, Hash: h, Note: string(signed)}
	if err := l.b.putCheckpoint(ctx, c); err != nil {
		return nil, err
	}
	l.last, l.lastErr = &c, nil
	return &c, nil
}

// autoCheckpoint signs after a write that matters, where a key is
// configured; what fails is kept for LastCheckpoint, never fails the write.
func (l *Ledger) autoCheckpoint(ctx context.Context) {
	if l == nil || l.opts.Signer == nil {
		return
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		l.last, l.lastErr = nil, err
	}
}

// LastCheckpoint is the checkpoint this process signed after its last
// write, or why none was (ErrNoSigningKey when no key is configured).
func (l *Ledger) LastCheckpoint() (*Checkpoint, error) {
	if l.opts.Signer == nil {
		return nil, ErrNoSigningKey
	}
	if l.last == nil && l.lastErr == nil {
		return nil, errors.New("nothing written yet")
	}
	return l.last, l.lastErr
}

// noteBody is the text of a signed note before its signatures.
func noteBody(text string) string {
	if i := strings.Index(text, "\n\n"); i >= 0 {
		return text[:i+1]
	}
	return text
}

// NewKeyPair makes an Ed25519 key pair for checkpoints, named name (the
// signed note's key name: no spaces, no '+'), and writes the private key
// to path (0600, never over a file) and the public key to path.pub (0644).
func NewKeyPair(path, name string) (vkey string, err error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", fmt.Errorf("key name %q: %w", name, err)
	}
	if err := writeNew(path, skey+"\n", 0o600); err != nil {
		return "", err
	}
	if err := writeNew(path+".pub", vkey+"\n", 0o644); err != nil {
		os.Remove(path)
		return "", err
	}
	return vkey, nil
}

func writeNew(path, text string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, errors.Unwrap(err))
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return nil
}

// PublicKey is the public key (NAME+HASH+KEY) of a signer key
// (PRIVATE+KEY+NAME+HASH+KEY), for verify where no public key is given.
func PublicKey(skey string) (string, error) {
	f := strings.Split(strings.TrimSpace(skey), "+")
	if len(f) != 5 || f[0] != "PRIVATE" || f[1] != "KEY" {
		return "", errors.New("not a signing key of a signed note (PRIVATE+KEY+NAME+HASH+KEY)")
	}
	b, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return "", errors.New("not an Ed25519 signing key")
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(f[2], pub)
}

// Head is the log as it is: its size and head hash, with the short form.
type Head struct {
	Entries uint64 `json:"entries"`
	Hash    Hash   `json:"-"`
}

// MarshalJSON writes the hash in hexadecimal and the short form.
func (h Head) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Entries uint64 `json:"entries"`
		Hash    string `json:"hash"`
		Short   string `json:"short"`
	}{h.Entries, h.Hash.String(), h.Short()})
}

// Short is the head's short form (ShortForm).
func (h Head) Short() string { return ShortForm(h.Entries, h.Hash) }

// Head reads the log's size and head hash, checking the entries since the
// newest checkpoint.
func (l *Ledger) Head(ctx context.Context) (Head, error) {
	_, n, h, err := l.head(ctx)
	return Head{Entries: n, Hash: h}, err
}

// WritePublicKey writes the public key (NAME+HASH+KEY) of an Ed25519 key
// held elsewhere (on a token) to path (0644, never over a file).
func WritePublicKey(path, name string, pub []byte) (string, error) {
	vkey, err := note.NewEd25519VerifierKey(name, ed25519.PublicKey(pub))
	if err != nil {
		return "", fmt.Errorf("key name %q: %w", name, err)
	}
	return vkey, writeNew(path, vkey+"\n", 0o644)
}
