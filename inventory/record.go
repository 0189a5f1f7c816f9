package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// The token record: what ods-keyguard scan read of every token, in
// state_dir, for check. At 10,000 keys and a few milliseconds a PKCS#11
// call (a network HSM) no read of every key fits in a monitoring plugin's
// 10 seconds: PKCS#11 has no call that reads the attributes of many
// objects at once. So a timer reads the tokens with all the time it needs
// and records them; check judges from the record, no older than [check]
// token_max_age, says how old it is, and reads from the tokens themselves
// only the keys the record lacks (made since), by CKA_ID. A key that
// vanished from a token since the record is seen at the next scan: that
// is the bound on what the record can hide, and check prints it.

// RecordFile is the record's name in state_dir.
const RecordFile = "tokens.json"

const (
	recordFormat = "ods-keyguard/token-record/1"
	// maxRecord bounds the record: about 600 bytes a key, so room for
	// tens of thousands of keys on a few tokens.
	maxRecord = 64 << 20
)

// Record is what one scan read.
type Record struct {
	Format string          `json:"format"`
	Tokens []RecordedToken `json:"tokens"`
}

// RecordedToken is one token's contents, or why it could not be read, and
// when. It is found again by Token, Module, Label and Env: a token whose
// configuration changed is not in the record.
type RecordedToken struct {
	Token  string `json:"token"` // repository "SoftHSM", mirror "site-b"
	Module string `json:"module"`
	Label  string `json:"label"`
	// Env is a digest of the environment the token is opened with (its
	// values are paths, but a digest is enough to tell them apart).
	Env      string             `json:"env"`
	ReadAt   time.Time          `json:"read_at"`
	Contents *hsmcheck.Contents `json:"contents,omitempty"`
	Error    string             `json:"error,omitempty"`
}

func envDigest(t hsmcheck.Token) string {
	sum := sha256.Sum256([]byte(hsmcheck.EnvKey(t.Env)))
	return hex.EncodeToString(sum[:8])
}

func (r *RecordedToken) is(t hsmcheck.Token) bool {
	return r.Token == t.Describe() && r.Module == t.Module && r.Label == t.Label && r.Env == envDigest(t)
}

// NewRecord records results as read at at.
func NewRecord(results []hsmcheck.Result, at time.Time) *Record {
	rec := &Record{Format: recordFormat, Tokens: []RecordedToken{}}
	for _, r := range results {
		rt := RecordedToken{Token: r.Token.Describe(), Module: r.Token.Module, Label: r.Token.Label,
			Env: envDigest(r.Token), ReadAt: at.UTC(), Contents: r.Contents}
		if r.Err != nil {
			rt.Contents, rt.Error = nil, r.Err.Error()
		}
		rec.Tokens = append(rec.Tokens, rt)
	}
	return rec
}

// WriteRecord replaces the record in state_dir, atomically.
func WriteRecord(dir *statedir.Dir, rec *Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return dir.WriteAtomic(RecordFile, append(b, '\n'), statedir.FileMode)
}

// ReadRecord reads the record in state_dir.
func ReadRecord(dir *statedir.Dir) (*Record, error) {
	b, err := dir.Read(RecordFile, maxRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no token record %s: ods-keyguard scan has not run (its timer, ods-keyguard-scan.timer, writes it)", dir.Name(RecordFile))
	}
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("token record %s: %w", dir.Name(RecordFile), err)
	}
	if rec.Format != recordFormat {
		return nil, fmt.Errorf("token record %s: format %q, want %q", dir.Name(RecordFile), rec.Format, recordFormat)
	}
	return &rec, nil
}

// Recorded is a Source whose tokens come from the record: the enforcer's
// database is read live (Live.State), and so are the keys a request
// expects that the record lacks.
type Recorded struct {
	Live Source
	// Dir is state_dir, opened read-only.
	Dir *statedir.Dir
	// MaxAge: a token recorded longer ago than that is unknown.
	MaxAge time.Duration
	// Now is the time the ages are measured against.
	Now time.Time
}

func (r Recorded) State(ctx context.Context) (*enforcer.State, error) { return r.Live.State(ctx) }

func (r Recorded) ZoneState(ctx context.Context, zone string) (*enforcer.State, error) {
	return r.Live.ZoneState(ctx, zone)
}

func (r Recorded) String() string { return r.Live.String() }

// Tokens answers each token from the record: too old or absent, its error
// says so; recorded unreadable, the error it had then, with its time.
// Keys req expects that a token's record lacks are read from the token,
// by CKA_ID, and added.
func (r Recorded) Tokens(ctx context.Context, tokens []hsmcheck.Token, req hsmcheck.Request) []hsmcheck.Result {
	out := make([]hsmcheck.Result, len(tokens))
	rec, err := ReadRecord(r.Dir)
	for i, t := range tokens {
		out[i].Token = t
		if err != nil {
			out[i].Err = fmt.Errorf("%s: %w", t.Describe(), err)
			continue
		}
		var rt *RecordedToken
		for j := range rec.Tokens {
			if rec.Tokens[j].is(t) {
				rt = &rec.Tokens[j]
			}
		}
		switch age := r.Now.Sub(rt.readAt()); {
		case rt == nil:
			out[i].Err = fmt.Errorf("%s: not in the token record %s (configured since the last ods-keyguard scan?)", t.Describe(), r.Dir.Name(RecordFile))
		case age > r.MaxAge:
			out[i].Err = fmt.Errorf("%s: token record %s is %s old, past [check] token_max_age %s (is ods-keyguard-scan.timer running?)",
				t.Describe(), r.Dir.Name(RecordFile), human.Duration(age), human.Duration(r.MaxAge))
		case rt.Error != "":
			out[i].Err = fmt.Errorf("%s (ods-keyguard scan, %s ago)", rt.Error, human.Duration(age))
			out[i].ReadAt = rt.ReadAt
		default:
			out[i].Contents, out[i].ReadAt = rt.Contents, rt.ReadAt
		}
	}
	// The keys expected that the record lacks, per token, read live.
	var live []hsmcheck.Token
	var at []int
	var ids [][]string
	for i, res := range out {
		if res.Contents == nil {
			continue
		}
		var lack []string
		for _, id := range req.Expect {
			if _, n := res.Contents.Find(id); n == 0 {
				lack = append(lack, strings.ToLower(id))
			}
		}
		if len(lack) > 0 {
			live, at, ids = append(live, tokens[i]), append(at, i), append(ids, lack)
		}
	}
	for k, t := range live {
		// One read a token: their key lists differ.
		got := r.Live.Tokens(ctx, []hsmcheck.Token{t}, hsmcheck.Request{IDs: ids[k], NoPublic: req.NoPublic, PublicIDs: req.PublicIDs})[0]
		i := at[k]
		if got.Err != nil {
			out[i].Contents = nil
			out[i].Err = fmt.Errorf("%s not in the token record of %s ago, and reading %s from the token: %w",
				human.Count(len(ids[k]), "key"), human.Duration(r.Now.Sub(out[i].ReadAt)), human.Noun(len(ids[k]), "it", "them"), got.Err)
			continue
		}
		merged := *out[i].Contents
		merged.Keys = append(append([]hsmcheck.Key(nil), merged.Keys...), got.Contents.Keys...)
		sort.SliceStable(merged.Keys, func(a, b int) bool { return merged.Keys[a].ID < merged.Keys[b].ID })
		out[i].Contents = hsmcheck.Fresh(&merged)
	}
	return out
}

func (rt *RecordedToken) readAt() time.Time {
	if rt == nil {
		return time.Time{}
	}
	return rt.ReadAt
}

// Scan reads every token whole (public keys too) with all the time ctx
// gives, and replaces the record in dir with what it read, unreadable
// tokens with their errors: check then says UNKNOWN for those, as it
// would reading them itself.
func Scan(ctx context.Context, src Source, tokens []hsmcheck.Token, dir *statedir.Dir, now func() time.Time) (*Record, error) {
	results := src.Tokens(ctx, tokens, hsmcheck.Request{})
	rec := NewRecord(results, now())
	if err := WriteRecord(dir, rec); err != nil {
		return nil, err
	}
	return rec, nil
}
