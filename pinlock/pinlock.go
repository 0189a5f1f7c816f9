// Package pinlock keeps HSMs from locking up on ods-keyguard's logins.
//
// Many HSMs lock a partition after a few wrong logins, and
// some zeroize it when the security officer is involved; ods-keyguard logs
// in on its own schedule (check every few minutes, every hook run), with
// PINs an operator may get wrong. So a PIN that a token refused is never
// tried on that token again, by any command, until its source (conf.xml or
// the pin_file) changes or an operator clears the refusal:
//
//   - A refusal (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_EXPIRED, or
//     CKR_PIN_LEN_RANGE, which some tokens count too) is recorded in
//     state_dir/pin-refusals.json: the token's module, label and name, the
//     PIN's source with its file identity (device, inode, size, mtime), and
//     an HMAC-SHA256 of the token and PIN under a key made once per install
//     (state_dir/pin-refusals.key). Never the PIN, nor a plain hash of it.
//   - Before a child process logs in, the parent looks the token and PIN
//     up: a recorded refusal whose source has not changed since fails the
//     token at once, without touching it.
//   - A process that could not record a refusal does not log in: each run
//     would otherwise spend one more of the token's tries. state_dir is
//     written by the enforcer's hooks, the operator and root; a user that
//     may only read it (the monitoring user, in its group) keeps its own
//     record (UserStore) and consults both.
//   - Within one process a token is asked to log in with a PIN at most
//     once after a refusal: the refusal is kept in memory too, whatever
//     became of the record.
//
// The file is local to the host, also with the MySQL ledger: PINs are a
// host's (its conf.xml and pin_files), so is what they may be tried on.
// Two hosts of an enforcer pair with the same wrong PIN on one partition
// spend one try each.
//
// hsmcheck consults a Store (hsmcheck.Token.Logins) before every login and
// tells it every refusal; ods-keyguard pin refusals and pin clear read and
// edit the record.
package pinlock

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/perm"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// Files of the record of refused PINs in state_dir.
const (
	RefusalsFile     = "pin-refusals.json"
	refusalsKeyFile  = "pin-refusals.key"
	refusalsFormat   = "ods-keyguard/pin-refusals/1"
	maxRefusalsBytes = 4 << 20
	maxKeyBytes      = 4 << 10
)

// Store keeps the refused PINs of the tokens in a state_dir. It is the
// hsmcheck.Logins of the tokens that config makes.
type Store struct {
	Dir   string // state_dir
	Group int    // the group a state_dir made here gets; -1: none
	// private: a user's own folder (UserStore), 0700 and owned by it.
	private bool
}

// Refusal is one refused PIN, as recorded.
type Refusal struct {
	Token       string    `json:"token"` // mirror "site-b"
	Module      string    `json:"module"`
	Label       string    `json:"label"`
	PINSource   string    `json:"pin_source"`
	SourceStamp string    `json:"source_stamp"`
	PINHMAC     string    `json:"pin_hmac"`
	Error       string    `json:"error"` // CKR_PIN_INCORRECT
	At          time.Time `json:"at"`
	By          string    `json:"by"` // uid 110
}

type refusalsDoc struct {
	Format   string    `json:"format"`
	Refusals []Refusal `json:"refusals"`
}

// RefusedError is a token not logged in to because the token refused this
// PIN before.
type RefusedError struct {
	Token   hsmcheck.Token
	Refusal Refusal
}

func (e *RefusedError) Error() string {
	src := "its source"
	if e.Refusal.PINSource != "" {
		src = e.Refusal.PINSource
	}
	return fmt.Sprintf("%s: token %q refused this PIN (%s), not tried again: correct the PIN in %s (a changed file is tried once), or once the token is fixed run ods-keyguard pin clear %s (refused at %s)",
		e.Token.Describe(), e.Token.Label, e.Refusal.Error, src, e.Token.Name, e.Refusal.At.UTC().Format(time.RFC3339))
}

// runRefusals are the refusals this process met, by HMAC key: kept even
// when they could not be recorded.
var runRefusals = struct {
	sync.Mutex
	m map[string]Refusal
}{m: map[string]Refusal{}}

// logins counts the logins this process asked of each token (by its
// identity), for tests and for the rule: at most one refused login per
// token and PIN per run.
var logins = struct {
	sync.Mutex
	m map[string]int
}{m: map[string]int{}}

// tokenIdentity is what makes two configured tokens the same token to log
// in to: module, label and the module's environment.
func tokenIdentity(t hsmcheck.Token) string {
	return t.Module + "\x00" + t.Label + "\x00" + hsmcheck.EnvKey(t.Env)
}

// sourceStamp identifies the PIN's source file as it is now: another
// content, a rewrite or a touch gives another stamp.
func sourceStamp(path string) string {
	if path == "" {
		return ""
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "unreadable"
	}
	return fmt.Sprintf("%d:%d:%d:%d.%09d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// admission is a token the record has cleared for a login, with what a
// refusal needs to be recorded.
type admission struct {
	stamp string
	store *Store
	own   bool // recorded in the user's own record, not state_dir
}

// Admit decides whether t may log in: an admission when it may (what
// records a refusal of that login), an error when it may not. A token
// without a PIN is admitted as it is (nil, nil).
//
// Refusals are looked up in state_dir (recorded by whoever can write it:
// the enforcer's hooks, the operator's commands, root) and in this user's
// own record (UserStore), which a user that cannot write state_dir (the
// monitoring user, in state_dir's group, reads only) keeps instead. A user
// that can record in neither does not log in.
func (s *Store) Admit(t hsmcheck.Token) (hsmcheck.Admission, error) {
	if t.PIN.Reveal() == "" {
		return nil, nil
	}
	stamp := sourceStamp(t.PINSource)
	runRefusals.Lock()
	r, seen := runRefusals.m[runMAC(t)]
	runRefusals.Unlock()
	if seen {
		return nil, &RefusedError{Token: t, Refusal: r}
	}
	stores := []*Store{s}
	if u := UserStore(); u != nil {
		stores = append(stores, u)
	}
	for _, g := range stores {
		key, err := g.key(false)
		if errors.Is(err, os.ErrNotExist) {
			continue // no key, so no record made with it
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not logging in: %w", t.Describe(), err)
		}
		doc, err := g.load()
		if err != nil {
			return nil, fmt.Errorf("%s: not logging in: %w", t.Describe(), err)
		}
		mac := pinMAC(key, t)
		// A refusal holds while the source it came from is unchanged:
		// the same PIN from another file (a mirror's pin_file holding
		// the repository's PIN) is refused as well.
		for _, r := range doc.Refusals {
			if r.PINHMAC == mac && (r.PINSource == t.PINSource && r.SourceStamp == stamp || r.PINSource != t.PINSource && sourceStamp(r.PINSource) == r.SourceStamp) {
				return nil, &RefusedError{Token: t, Refusal: r}
			}
		}
	}
	// Where a refusal would be recorded: state_dir, else this user's own.
	rec := s
	werr := s.writable()
	if werr != nil {
		u := UserStore()
		if u == nil {
			return nil, fmt.Errorf("%s: not logging in, since a refused PIN could not be recorded: %w", t.Describe(), werr)
		}
		if err := u.writable(); err != nil {
			return nil, fmt.Errorf("%s: not logging in, since a refused PIN could not be recorded: %w; nor in %s: %v", t.Describe(), werr, u.Dir, err)
		}
		rec = u
	}
	// The record's folder and key are made when a PIN is refused, not
	// before: a monitoring user whose PINs are right leaves nothing behind.
	logins.Lock()
	logins.m[tokenIdentity(t)]++
	logins.Unlock()
	return &admission{stamp: stamp, store: rec, own: rec != s}, nil
}

// Refused records that t refused its PIN with code, and returns the error
// to report: the token's, and what becomes of the PIN.
func (gt *admission) Refused(t hsmcheck.Token, code string, loginErr error) error {
	r := Refusal{
		Token: t.Describe(), Module: t.Module, Label: t.Label, PINSource: t.PINSource,
		SourceStamp: gt.stamp, Error: code, At: time.Now().UTC().Truncate(time.Second),
		By: fmt.Sprintf("uid %d", os.Getuid()),
	}
	runRefusals.Lock()
	runRefusals.m[runMAC(t)] = r
	runRefusals.Unlock()
	key, err := gt.store.key(true)
	if err == nil {
		r.PINHMAC = pinMAC(key, t)
		err = gt.store.record(r)
	}
	if err != nil {
		return fmt.Errorf("%w; the refusal could not be recorded (%v): the next run may try this PIN once more: correct it now", loginErr, err)
	}
	src := "its source"
	if t.PINSource != "" {
		src = t.PINSource
	}
	where := filepath.Join(gt.store.Dir, RefusalsFile)
	if gt.own {
		where = fmt.Sprintf("%s for uid %d only (it cannot write state_dir; a writer records it for all)", where, os.Getuid())
	}
	return fmt.Errorf("%w; recorded in %s: this PIN is not tried again until %s changes or an operator runs ods-keyguard pin clear %s",
		loginErr, where, src, t.Name)
}

// runKey keys the refusals this process met, in memory only.
var runKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

func runMAC(t hsmcheck.Token) string { return pinMAC(runKey, t) }

// UserStore is the record of refused PINs of a user that cannot write
// state_dir: a folder of its own (0700) in $XDG_STATE_HOME, else in
// /var/tmp, which outlives a reboot. nil for root, which can always write
// state_dir.
func UserStore() *Store {
	if os.Getuid() == 0 {
		return nil
	}
	base := "/var/tmp"
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		base = x
	}
	return &Store{Dir: fmt.Sprintf("%s/ods-keyguard-pin-refusals-%d", base, os.Getuid()), Group: -1, private: true}
}

// pinMAC is the keyed hash of the token's identity and its PIN.
func pinMAC(key []byte, t hsmcheck.Token) string {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, "ods-keyguard pin refusal 1\x00")
	io.WriteString(m, tokenIdentity(t))
	io.WriteString(m, "\x00")
	io.WriteString(m, t.PIN.Reveal())
	return hex.EncodeToString(m.Sum(nil))
}

// open opens the folder of the record: state_dir, made when create is set
// and it is missing, or a user's own folder (UserStore).
func (g *Store) open(create bool) (*statedir.Dir, error) {
	if g.private {
		return statedir.OpenPrivate(g.Dir, create)
	}
	return statedir.Open(g.Dir, create, g.Group)
}

// key returns the install's HMAC key, made when missing and create is set
// (linked into place, so that two processes making it agree on one).
func (g *Store) key(create bool) ([]byte, error) {
	d, err := g.open(create)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	for attempt := 0; attempt < 2; attempt++ {
		b, err := d.Read(refusalsKeyFile, maxKeyBytes)
		if err == nil {
			k, derr := hex.DecodeString(strings.TrimSpace(string(b)))
			if derr != nil || len(k) != 32 {
				return nil, fmt.Errorf("state file %s: not a key of ods-keyguard: move it aside (the refusals recorded with it are then forgotten)", d.Name(refusalsKeyFile))
			}
			return k, nil
		}
		if !errors.Is(err, os.ErrNotExist) || !create {
			return nil, err
		}
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := d.Create(refusalsKeyFile, []byte(hex.EncodeToString(k)+"\n"), statedir.FileMode); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("state file %s: cannot be made", d.Name(refusalsKeyFile))
}

// load reads the recorded refusals; a missing file is none.
func (g *Store) load() (*refusalsDoc, error) {
	doc := &refusalsDoc{Format: refusalsFormat}
	d, err := g.open(false)
	if errors.Is(err, os.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.Read(RefusalsFile, maxRefusalsBytes)
	if errors.Is(err, os.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, doc); err != nil || doc.Format != refusalsFormat {
		return nil, fmt.Errorf("state file %s: not a record of refused PINs: move it aside only once every PIN is known to be right", filepath.Join(g.Dir, RefusalsFile))
	}
	return doc, nil
}

// writable says whether this process could record a refusal in g: the
// folder writable, and this user one whose records are read there (root
// or the folder's owner, see statedir.Dir.Trusted). A record made by
// anyone else would be refused by every reader, so such a user keeps its
// own (UserStore). A folder not made yet is made at the first refusal:
// then the folder it goes into must let this user make it.
func (g *Store) writable() error {
	d, err := g.open(false)
	if errors.Is(err, os.ErrNotExist) {
		up := filepath.Dir(g.Dir)
		if err := syscall.Access(up, 0o2|0o1); err != nil {
			return fmt.Errorf("%s: cannot be made: %w: uid %d needs write access to %s", g.Dir, err, os.Getuid(), up)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if !d.Trusted(uint32(os.Getuid())) {
		return fmt.Errorf("state_dir %s: uid %d does not write records there: only root and its owner (%s) do; run through sudo",
			g.Dir, os.Getuid(), perm.User(d.Owner()))
	}
	if err := syscall.Faccessat(d.Fd(), ".", 0o2|0o1, 0); err != nil {
		var st syscall.Stat_t
		syscall.Fstat(d.Fd(), &st)
		return fmt.Errorf("state_dir %s: %w: uid %d needs write access to it (uid %d, gid %d, mode %04o): run as root or as its owner, or through sudo",
			g.Dir, err, os.Getuid(), st.Uid, st.Gid, st.Mode&0o7777)
	}
	return nil
}

// store replaces the refusals file with doc, under the state lock of
// this folder's refusals (a flock on the file's folder would serialise
// with the ledger; the refusals take their own).
func (g *Store) update(f func(*refusalsDoc) bool) error {
	d, err := g.open(true)
	if err != nil {
		return err
	}
	defer d.Close()
	// The folder itself is the lock, so that two processes recording at
	// once keep both, and no file is needed that every writer may open.
	if err := flockTimeout(d.Fd(), 5*time.Second); err != nil {
		return fmt.Errorf("state file %s: %w", d.Name(RefusalsFile), err)
	}
	defer syscall.Flock(d.Fd(), syscall.LOCK_UN)
	doc, err := g.load()
	if err != nil {
		return err
	}
	if !f(doc) {
		return nil
	}
	sort.SliceStable(doc.Refusals, func(i, j int) bool { return doc.Refusals[i].At.Before(doc.Refusals[j].At) })
	data, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	return d.WriteAtomic(RefusalsFile, append(data, '\n'), statedir.FileMode)
}

func flockTimeout(fd int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return fmt.Errorf("lock: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// record adds r, replacing an older refusal of the same token, PIN and
// source.
func (g *Store) record(r Refusal) error {
	return g.update(func(doc *refusalsDoc) bool {
		out := doc.Refusals[:0]
		for _, x := range doc.Refusals {
			if x.PINHMAC != r.PINHMAC || x.PINSource != r.PINSource {
				out = append(out, x)
			}
		}
		doc.Refusals = append(out, r)
		return true
	})
}

// Refusals lists the recorded refusals, oldest first, each with whether it
// still holds (its PIN source unchanged).
func (g *Store) Refusals() ([]Refusal, []bool, error) {
	doc, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	holds := make([]bool, len(doc.Refusals))
	for i, r := range doc.Refusals {
		holds[i] = sourceStamp(r.PINSource) == r.SourceStamp
	}
	return doc.Refusals, holds, nil
}

// Clear forgets the refusals recorded for the token named name (every
// token when name is ""), and returns them.
func (g *Store) Clear(name string) ([]Refusal, error) {
	var gone []Refusal
	err := g.update(func(doc *refusalsDoc) bool {
		out := doc.Refusals[:0:0]
		for _, r := range doc.Refusals {
			if name == "" || refusalName(r) == name {
				gone = append(gone, r)
				continue
			}
			out = append(out, r)
		}
		doc.Refusals = out
		return len(gone) > 0
	})
	return gone, err
}

// refusalName is the configured name in a refusal's token description
// (`mirror "site-b"` gives site-b).
func refusalName(r Refusal) string {
	if i := strings.Index(r.Token, "\""); i >= 0 && strings.HasSuffix(r.Token, "\"") {
		return r.Token[i+1 : len(r.Token)-1]
	}
	return r.Token
}

// loginCount returns how many logins this process asked of the token (by
// module, label and environment).
func loginCount(t hsmcheck.Token) int {
	logins.Lock()
	defer logins.Unlock()
	return logins.m[tokenIdentity(t)]
}
