package hooks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// The DS guard's runs, on a fake enforcer and fake tokens with a real
// ledger and real forward commands (sh): the decision tables of the hook
// (forward, withhold, hold, reject, skip), of the release and of drop. The
// same runs against a real ods-enforcerd and SoftHSMv2 are the hook_*
// scripts.

// lines is a Logger that keeps what it is told.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) add(s string)     { l.mu.Lock(); l.got = append(l.got, s); l.mu.Unlock() }
func (l *lines) Info(s string)    { l.add("info: " + s) }
func (l *lines) Warning(s string) { l.add("warning: " + s) }
func (l *lines) Err(s string)     { l.add("err: " + s) }
func (l *lines) String() string   { return strings.Join(l.got, "\n") }

// guardLab is zone example.com with KSK old (its DS seen, backed up in
// ceremony c1) and a successor KSK new, on repository R's token and mirror
// b; the forward commands append what they get to files.
type guardLab struct {
	w        *inventorytest.World
	f        *inventorytest.Fake
	g        *Guard
	log      *lines
	dir      string
	old, new *enforcer.Key
}

func newGuardLab(t *testing.T) *guardLab {
	t.Helper()
	w := inventorytest.NewWorld(t)
	old := w.Key("R", "a1", enforcer.KSK, enforcer.BackupDone)
	w.Assign("example.com", old, enforcer.DSSeen, true)
	nw := w.Key("R", "b2", enforcer.KSK, enforcer.BackupRequired)
	f := inventorytest.New(w.St)
	f.Put([]hsmcheck.Key{w.Pair(old), w.Pair(nw)}, "R", "b")
	dir := t.TempDir()
	l := &guardLab{w: w, f: f, log: &lines{}, dir: dir, old: old, new: nw}
	l.g = &Guard{Ledger: ledgertest.New(t), Source: f, Tokens: inventorytest.Tokens("R", "b"), RequireBackup: map[string]bool{"R": true},
		SubmitForward: "cat >> " + filepath.Join(dir, "submitted"), RetractForward: "cat >> " + filepath.Join(dir, "retracted"),
		Log: l.log, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	l.confirm(t, "c1", old)
	// The records begin with the first run: the old KSK's DS is adopted.
	if o := l.g.Submit(t.Context(), strings.NewReader(w.Line("example.com", old))); o.Forwarded != 1 {
		t.Fatalf("the covered KSK was not forwarded: %+v\n%s", o, l.log)
	}
	os.Remove(filepath.Join(dir, "submitted"))
	return l
}

// confirm records a confirmed ceremony of R covering keys.
func (l *guardLab) confirm(t *testing.T, id string, keys ...*enforcer.Key) {
	t.Helper()
	c := &ledger.Ceremony{ID: id, Repository: "R", Status: ledger.Confirmed, RequireBackup: true, BackupToken: &ledger.TokenRecord{Name: "vault"}}
	for _, k := range keys {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: k.Locator, Role: k.Role.String(), Fingerprint: l.w.Pair(k).Fingerprint})
		k.Backup = enforcer.BackupDone
	}
	store, err := l.g.Ledger.Ceremonies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.End(t.Context(), c); err != nil {
		t.Fatal(err)
	}
}

// sent is what a forward command received, "" when it did not run.
func (l *guardLab) sent(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.dir, name))
	return string(b)
}

// pending lists the pending entries as "KIND ACTION ZONE KEYTAG".
func (l *guardLab) pending(t *testing.T) []*ledger.DSEntry {
	t.Helper()
	b, err := l.g.Ledger.DS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return b.Pending
}

// rollover starts a KSK rollover onto new: published, its DS to submit.
func (l *guardLab) rollover() {
	l.w.Assign("example.com", l.new, enforcer.DSSubmit, true)
}

func TestGuardSubmit(t *testing.T) {
	tests := []struct {
		name   string
		change func(*testing.T, *guardLab)
		line   func(*guardLab) string
		status int
		want   string // in the log
		sent   bool
	}{
		{"covered", func(t *testing.T, l *guardLab) { l.confirm(t, "c2", l.new) }, nil, 0, "backed up in ceremony c2", true},
		{"in no ceremony", func(*testing.T, *guardLab) {}, nil, 1, "key b2 is in no confirmed backup ceremony", false},
		{"Prepared in the enforcer", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.new.Backup = enforcer.BackupPrepared
		}, nil, 1, "key b2: the enforcer has it Prepared, not Done", false},
		{"missing from the mirror", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.f.Remove(l.new.Locator, "b")
		}, nil, 1, `key b2 is missing from mirror "b"`, false},
		{"mirror unreadable", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.f.TokenErr["b"] = errors.New("login: CKR_PIN_INCORRECT")
		}, nil, 1, "cannot check key b2: login: CKR_PIN_INCORRECT", false},
		{"database unreadable", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.f.StateErr = errors.New("enforcer database kasp.db: database is locked")
		}, nil, 1, "enforcer database kasp.db: database is locked", false},
		{"another key than the ceremony's", func(t *testing.T, l *guardLab) {
			// The ceremony backed up another key pair under that CKA_ID.
			pair := l.w.Pairs[l.new.Locator]
			l.w.Pairs[l.new.Locator] = inventorytest.NewKey(t, l.new.Locator)
			l.confirm(t, "c2", l.new)
			l.w.Pairs[l.new.Locator] = pair
		}, nil, 1, "the DNSKEY is not the key that ceremony c2 backed up as b2", false},
		{"forward command fails", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.g.SubmitForward = "exit 3"
		}, nil, 3, "forward command failed: exit status 3", false},
		{"no forward command", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			l.g.SubmitForward = ""
		}, nil, 1, "approved, but kept back: no forward command is configured ([hooks] ds_submit_forward)", false},
		{"not a DNSKEY", func(*testing.T, *guardLab) {}, func(*guardLab) string { return "example.com. 3600 IN TXT hello\n" }, 1, "rejected", false},
		{"nothing on stdin", func(*testing.T, *guardLab) {}, func(*guardLab) string { return "" }, 1, "no DNSKEY on stdin: nothing to do", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newGuardLab(t)
			l.rollover()
			tt.change(t, l)
			line := l.w.Line("example.com", l.new)
			if tt.line != nil {
				line = tt.line(l)
			}
			o := l.g.Submit(t.Context(), strings.NewReader(line))
			if o.ExitStatus() != tt.status || !strings.Contains(l.log.String(), tt.want) {
				t.Errorf("exit %d, want %d; log:\n%s\nwant %q", o.ExitStatus(), tt.status, l.log, tt.want)
			}
			if got := l.sent("submitted"); (got != "") != tt.sent || (tt.sent && got != line) {
				t.Errorf("forwarded %q, want forwarded %v", got, tt.sent)
			}
			// What is not forwarded is on record (as withheld, or as a
			// failed forward) for hook release and check.
			if tt.status != 0 && tt.name != "not a DNSKEY" && tt.name != "nothing on stdin" && len(l.pending(t)) == 0 {
				t.Error("kept back, but nothing pending on record")
			}
		})
	}
}

func TestGuardRetract(t *testing.T) {
	tests := []struct {
		name   string
		change func(*testing.T, *guardLab)
		status int
		want   string
		sent   bool
	}{
		{"successor at the parent", func(t *testing.T, l *guardLab) {
			l.confirm(t, "c2", l.new)
			if o := l.g.Submit(t.Context(), strings.NewReader(l.w.Line("example.com", l.new))); o.Forwarded != 1 {
				t.Fatalf("successor not forwarded: %s", l.log)
			}
			l.new.Uses[0].DSAtParent = enforcer.DSSeen
		}, 0, "ds-retract: zone example.com key tag", true},
		{"successor withheld", func(t *testing.T, l *guardLab) {
			l.g.Submit(t.Context(), strings.NewReader(l.w.Line("example.com", l.new)))
		}, 1, "its successor's DS is not at the parent yet", false},
		{"the enforcer still wants it", func(t *testing.T, l *guardLab) { l.old.Uses[0].DSAtParent = enforcer.DSSeen },
			1, "the enforcer wants this DS at the parent (DS seen)", false},
		{"zone not in the enforcer", func(t *testing.T, l *guardLab) { l.w.St.Zones[0].Name = "other.example" },
			1, "the enforcer has no zone example.com", false},
		{"no successor: the zone goes unsigned", func(t *testing.T, l *guardLab) {
			l.w.St.Zones[0].Keys = l.w.St.Zones[0].Keys[:1]
		}, 0, "forwarded", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newGuardLab(t)
			l.rollover()
			l.old.Uses[0].DSAtParent = enforcer.DSRetract
			tt.change(t, l)
			line := l.w.Line("example.com", l.old)
			o := l.g.Retract(t.Context(), strings.NewReader(line))
			if o.ExitStatus() != tt.status || !strings.Contains(l.log.String(), tt.want) {
				t.Errorf("exit %d, want %d; log:\n%s\nwant %q", o.ExitStatus(), tt.status, l.log, tt.want)
			}
			if got := l.sent("retracted"); (got != "") != tt.sent || (tt.sent && got != line) {
				t.Errorf("retraction forwarded %q, want %v", got, tt.sent)
			}
		})
	}
}

// A retraction of a DS that never went to the parent is skipped, and the
// withheld submission of that key is dropped: released later, it would
// put back a DS nobody retracts.
func TestGuardRetractNeverSubmitted(t *testing.T) {
	l := newGuardLab(t)
	l.rollover()
	if o := l.g.Submit(t.Context(), strings.NewReader(l.w.Line("example.com", l.new))); o.Withheld != 1 {
		t.Fatalf("not withheld: %s", l.log)
	}
	l.new.Uses[0].DSAtParent = enforcer.DSRetract
	o := l.g.Retract(t.Context(), strings.NewReader(l.w.Line("example.com", l.new)))
	if o.Skipped != 1 || o.ExitStatus() != 0 || l.sent("retracted") != "" {
		t.Errorf("outcome %+v, sent %q\n%s", o, l.sent("retracted"), l.log)
	}
	if p := l.pending(t); len(p) != 0 {
		t.Errorf("still pending: %+v", p[0])
	}
}

// The release decides again what was kept back: forwarded once covered (the
// successor's DS before the old one's retraction), dropped when the enforcer
// no longer wants it, kept otherwise.
func TestGuardRelease(t *testing.T) {
	ctx := t.Context()
	l := newGuardLab(t)
	l.rollover()
	l.g.Submit(ctx, strings.NewReader(l.w.Line("example.com", l.new)))
	l.old.Uses[0].DSAtParent = enforcer.DSRetract
	l.g.Retract(ctx, strings.NewReader(l.w.Line("example.com", l.old)))
	if p := l.pending(t); len(p) != 2 {
		t.Fatalf("pending %d, want the submission and the retraction", len(p))
	}
	var out bytes.Buffer
	rep, err := l.g.Release(ctx, &out)
	if err != nil || rep.Left != 2 || l.sent("submitted") != "" {
		t.Fatalf("release before the ceremony: %v, left %d, sent %q\n%s", err, rep.Left, l.sent("submitted"), out.String())
	}
	l.confirm(t, "c2", l.new)
	out.Reset()
	if rep, err = l.g.Release(ctx, &out); err != nil || rep.Left != 0 {
		t.Fatalf("release: %v, left %d\n%s", err, rep.Left, out.String())
	}
	tag := inventorytest.KeyTag(l.w.Pair(l.new))
	oldTag := inventorytest.KeyTag(l.w.Pair(l.old))
	want := "released: ds-submit zone example.com key tag " + strconv.Itoa(tag) + "\nreleased: ds-retract zone example.com key tag " + strconv.Itoa(oldTag) + "\n"
	if out.String() != want {
		t.Errorf("release said\n%s\nwant\n%s", out.String(), want)
	}
	if l.sent("submitted") != l.w.Line("example.com", l.new) || l.sent("retracted") != l.w.Line("example.com", l.old) {
		t.Errorf("sent %q and %q", l.sent("submitted"), l.sent("retracted"))
	}

	// Withheld, then purged by the enforcer before any ceremony: dropped.
	l2 := newGuardLab(t)
	l2.rollover()
	l2.g.Submit(ctx, strings.NewReader(l2.w.Line("example.com", l2.new)))
	l2.w.St.Zones[0].Keys = l2.w.St.Zones[0].Keys[:1]
	l2.new.Uses, l2.new.State = nil, enforcer.Delete
	out.Reset()
	if rep, err := l2.g.Release(ctx, &out); err != nil || rep.Left != 0 || !strings.HasPrefix(out.String(), "dropped: ds-submit zone example.com key tag ") || l2.sent("submitted") != "" {
		t.Errorf("release of a purged key: %v\n%s", err, out.String())
	}
}

// Drop settles a pending entry on purpose, with who and why; an unknown
// entry is an error naming it.
func TestGuardDrop(t *testing.T) {
	ctx := t.Context()
	l := newGuardLab(t)
	l.rollover()
	l.g.Submit(ctx, strings.NewReader(l.w.Line("example.com", l.new)))
	p := l.pending(t)
	if len(p) != 1 {
		t.Fatalf("pending %d", len(p))
	}
	if _, err := l.g.Drop(ctx, "nosuch", "test", "alice"); err == nil || !strings.Contains(err.Error(), `no pending entry "nosuch"`) {
		t.Errorf("unknown entry: %v", err)
	}
	if _, err := l.g.Drop(ctx, p[0].ID, "sent by hand", "alice"); err != nil || len(l.pending(t)) != 0 {
		t.Errorf("drop: %v, %d pending", err, len(l.pending(t)))
	}
	if !strings.Contains(l.log.String(), "dropped zone example.com key tag "+strconv.Itoa(inventorytest.KeyTag(l.w.Pair(l.new)))+" on purpose by alice: sent by hand") {
		t.Errorf("log:\n%s", l.log)
	}
}

// A hook that cannot read stdin in time decides nothing and says so.
func TestGuardStdinNeverClosed(t *testing.T) {
	l := newGuardLab(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if o := l.g.Submit(ctx, r); !o.Nothing || !strings.Contains(l.log.String(), "stdin was not closed in time") {
		t.Errorf("outcome %+v\n%s", o, l.log)
	}
}
