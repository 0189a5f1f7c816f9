package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newLedger(t *testing.T, dir string) *Ledger {
	t.Helper()
	l, err := New(context.Background(), Options{Dir: dir, Group: -1, LockWait: time.Second})
	must(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestStoreRoundTripAndAppendOnly(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	l := newLedger(t, dir)
	s, err := l.Ceremonies(ctx)
	must(t, err)
	c := &Ceremony{ID: NewID("Soft HSM/1", time.Unix(0, 0)), Repository: "A", Status: Open,
		Keys: []KeyRecord{{Locator: "aa"}}}
	if !strings.HasPrefix(c.ID, "19700101T000000Z-Soft_HSM_1-") {
		t.Errorf("id %q", c.ID)
	}
	must(t, s.SaveOpen(ctx, c))
	c.Status = Confirmed
	must(t, s.End(ctx, c))
	// Ending the same ceremony again (an interrupted run) records it once.
	must(t, s.End(ctx, c))
	s2, err := newLedger(t, dir).Ceremonies(ctx)
	must(t, err)
	if len(s2.History()) != 1 || s2.Open("A") != nil || s2.LastConfirmed("A") == nil {
		t.Fatalf("history %v, open %v", s2.History(), s2.Open("A"))
	}
	if s2.Coverage().Covering("A", "AA") == nil {
		t.Error("coverage is not case-insensitive")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
	// state_dir is made setgid and group-readable, not group-writable (the
	// group is the monitoring user's), the files group-readable.
	fi, err := os.Stat(dir)
	must(t, err)
	if fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm() != 0o750 {
		t.Errorf("state_dir mode %v", fi.Mode())
	}
	fi, err = os.Stat(filepath.Join(dir, historyFile))
	must(t, err)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("history mode %v", fi.Mode())
	}
}

func TestCorruptFilesAreReported(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := newLedger(t, dir).Ceremonies(ctx)
	must(t, err)
	must(t, s.End(ctx, &Ceremony{ID: "x", Repository: "A", Status: Confirmed}))
	path := filepath.Join(dir, historyFile)
	good, err := os.ReadFile(path)
	must(t, err)
	for name, data := range map[string]string{
		"truncated": string(good[:len(good)/2]),
		"edited":    strings.Replace(string(good), `"id": "x"`, `"id": "y"`, 1),
		"format":    strings.Replace(string(good), "history/1", "history/9", 1),
	} {
		must(t, os.WriteFile(path, []byte(data), 0o600))
		_, err := newLedger(t, dir).Ceremonies(ctx)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Path != path {
			t.Errorf("%s: got %v", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != data {
			t.Errorf("%s: the file was changed", name)
		}
	}
}

// A symlink planted in state_dir, or state_dir itself a symlink, is never
// followed: not to read, not to write, not to lock.
func TestSymlinksAreRefused(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "state")
	victim := filepath.Join(base, "victim")
	must(t, os.WriteFile(victim, []byte("precious\n"), 0o600))
	must(t, os.MkdirAll(dir, 0o770))
	must(t, os.Symlink(victim, filepath.Join(dir, lockName)))
	l := newLedger(t, dir)
	_, err := l.Lock(ctx)
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("lock through a symlink: %v", err)
	}
	must(t, os.Remove(filepath.Join(dir, lockName)))
	// The log begun first: its first entry reads the records there are.
	_, err = l.Append(ctx, "test", map[string]string{})
	must(t, err)
	must(t, os.Symlink(victim, filepath.Join(dir, historyFile)))
	if _, err := l.Ceremonies(ctx); err == nil || !strings.Contains(err.Error(), historyFile+": refused: is a symlink") {
		t.Errorf("history through a symlink: %v", err)
	}
	// Writing replaces the link with a file; the target is untouched.
	must(t, l.b.end(ctx, []*Ceremony{{ID: "x"}}, nil, &Ceremony{ID: "x"}, true, ""))
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dir, historyFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("history is %v, %v", fi.Mode(), err)
	}
	link := filepath.Join(base, "link")
	must(t, os.Symlink(dir, link))
	if _, err := New(context.Background(), Options{Dir: link, Group: -1}); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("state_dir a symlink: %v", err)
	}
	must(t, os.Mkdir(filepath.Join(dir, lockName), 0o700))
	if _, err := l.Lock(ctx); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("lock a folder: %v", err)
	}
}

// A writer waits for the lock, says who holds it, then gives up naming the
// real holder: here another process.
func TestLockNamesTheHolder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLedger(t, dir)
	unlock, err := l.Lock(ctx)
	must(t, err)
	unlock()
	holder := exec.Command("flock", filepath.Join(dir, lockName), "sleep", "30")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, holder.Start())
	kill := func() { syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); holder.Wait() }
	defer kill()
	for i := 0; ; i++ {
		b, _ := os.ReadFile("/proc/locks")
		if bytes.Contains(b, []byte("FLOCK")) || i > 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	var told bytes.Buffer
	l2, err := New(context.Background(), Options{Dir: dir, Group: -1, LockWait: 200 * time.Millisecond, Waiting: &told})
	must(t, err)
	defer l2.Close()
	start := time.Now()
	_, err = l2.Lock(ctx)
	if time.Since(start) < 200*time.Millisecond {
		t.Error("did not wait")
	}
	// flock(1) forks sleep, which inherits the lock: either may be named.
	if err == nil || !strings.Contains(err.Error(), "held by pid ") || !strings.Contains(err.Error(), "(flock ") || !strings.Contains(err.Error(), "for over 200ms") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(told.String(), "waiting for the state lock") {
		t.Errorf("not told: %q", told.String())
	}
	kill()
	unlock, err = l2.Lock(ctx)
	must(t, err)
	unlock()
}

func TestDSSpoolAndBook(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLedger(t, dir)
	line := "a.example. 60 IN DNSKEY 257 3 13 ViRu7YdLvtLg8ak0s6ZxOHpQUhWKUJ8rVyyiW1q2BGmUr9MM7dNXRZHHoG9Dv0o28Do9LX2yWOqPp6r8tWlnSA== \n"
	fp, alg := lineKey(line)
	if len(fp) != 64 || alg != 13 {
		t.Fatalf("lineKey: %q %d", fp, alg)
	}
	base := DSEvent{Kind: Submit, Zone: "a.example", KeyTag: 1234, Fingerprint: fp, Locator: "aa", Line: line}
	w := base
	w.Action, w.Reason = Withheld, "no ceremony"
	must(t, l.AddDS(ctx, w))
	w.Reason = "still no ceremony"
	must(t, l.AddDS(ctx, w))
	b, err := l.DS(ctx)
	must(t, err)
	if len(b.Pending) != 1 || b.Pending[0].Reason != "still no ceremony" || b.Pending[0].ID != EntryID(Submit, "a.example", fp) {
		t.Fatalf("pending %+v", b.Pending)
	}
	k := b.Find("A.example", "", 1234, 13)
	if k == nil || k.AtParent() || b.PendingFor(Submit, k) == nil {
		t.Fatalf("key %+v", k)
	}
	fwd := base
	fwd.Action = Forwarded
	must(t, l.AddDS(ctx, fwd))
	unlock, err := l.Lock(ctx)
	must(t, err)
	must(t, l.CompactDS(ctx))
	must(t, l.CompactDS(ctx)) // again: nothing doubles
	unlock()
	left, _ := filepath.Glob(filepath.Join(dir, "ds", "spool", "*.json"))
	if len(left) != 0 {
		t.Errorf("spool left: %v", left)
	}
	b, err = l.DS(ctx)
	must(t, err)
	if len(b.Pending) != 0 || len(b.Events) != 3 || !b.Find("a.example", "aa", 0, 0).AtParent() {
		t.Fatalf("after forward: pending %+v, %d events", b.Pending, len(b.Events))
	}
	r := base
	r.Kind, r.Action = Retract, Forwarded
	must(t, l.AddDS(ctx, r))
	b, _ = l.DS(ctx)
	if b.Find("a.example", "aa", 0, 0).AtParent() {
		t.Error("still at the parent after a forwarded retraction")
	}
}

// pending.json of an earlier ods-keyguard is read as events, garbage as
// rejected input, and folded in once.
func TestLegacyPending(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := statedir.Open(dir, true, -1)
	must(t, err)
	defer d.Close()
	line := "a.example. 60 IN DNSKEY 257 3 13 ViRu7YdLvtLg8ak0s6ZxOHpQUhWKUJ8rVyyiW1q2BGmUr9MM7dNXRZHHoG9Dv0o28Do9LX2yWOqPp6r8tWlnSA== \n"
	must(t, store(d, legacyPending, legacyFormat, []legacyEntry{
		{ID: "1", Kind: Submit, Zone: "a.example", KeyTag: 7, Line: line, Received: time.Unix(100, 0), Reason: "no ceremony"},
		{ID: "2", Kind: Submit, Line: "\x00\x01binary", Received: time.Unix(101, 0), Reason: "not a DNSKEY"},
	}))
	l := newLedger(t, dir)
	b, err := l.DS(ctx)
	must(t, err)
	if len(b.Pending) != 1 || len(b.Rejected) != 1 || strings.Contains(b.Rejected[0].Line, "\x00") {
		t.Fatalf("pending %+v rejected %+v", b.Pending, b.Rejected)
	}
	unlock, err := l.Lock(ctx)
	must(t, err)
	must(t, l.CompactDS(ctx))
	unlock()
	if _, err := os.Stat(filepath.Join(dir, legacyPending)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending.json still there: %v", err)
	}
	b, _ = l.DS(ctx)
	if len(b.Pending) != 1 || len(b.Events) != 2 {
		t.Fatalf("after compaction: %d pending, %d events", len(b.Pending), len(b.Events))
	}
}

// A read-only ledger on a state_dir that does not exist yet reads as empty
// and makes nothing.
func TestReadOnlyMakesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	l, err := New(context.Background(), Options{Dir: dir, ReadOnly: true})
	must(t, err)
	s, err := l.Ceremonies(context.Background())
	must(t, err)
	b, err := l.DS(context.Background())
	must(t, err)
	if len(s.History()) != 0 || len(b.Events) != 0 {
		t.Error("not empty")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state_dir made: %v", err)
	}
}

func TestQuoteInput(t *testing.T) {
	q := QuoteInput(bytes.Repeat([]byte{0, 1, 'a'}, 100))
	if strings.ContainsAny(q, "\x00\x01") || !strings.HasSuffix(q, "... (300 bytes)") {
		t.Errorf("got %s", q)
	}
}

// A DS settled by the operator after its zone left the enforcer stays at
// the parent by the records, but no longer asks for anything; a later
// submission of the same key does again.
func TestDSSettled(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ev := func(kind, action string, at time.Duration) DSEvent {
		return DSEvent{Kind: kind, Action: action, Zone: "gone.example", KeyTag: 7, Locator: "aa", Fingerprint: "ff", Time: t0.Add(at)}
	}
	b := Book([]DSEvent{ev(Submit, Forwarded, 0)})
	if k := b.Find("gone.example", "aa", 7, 0); k == nil || !k.Unsettled() {
		t.Fatalf("forwarded: %+v", k)
	}
	b = Book([]DSEvent{ev(Submit, Forwarded, 0), ev(Retract, Settled, time.Hour)})
	if k := b.Find("gone.example", "aa", 7, 0); !k.AtParent() || k.Unsettled() || len(b.Pending) != 0 {
		t.Fatalf("settled: %+v, pending %v", k, b.Pending)
	}
	b = Book([]DSEvent{ev(Submit, Forwarded, 0), ev(Retract, Settled, time.Hour), ev(Submit, Forwarded, 2*time.Hour)})
	if k := b.Find("gone.example", "aa", 7, 0); !k.Unsettled() {
		t.Fatalf("submitted again after settling: %+v", k)
	}
	b = Book([]DSEvent{ev(Submit, Forwarded, 0), ev(Retract, Forwarded, time.Hour)})
	if k := b.Find("gone.example", "aa", 7, 0); k.Unsettled() {
		t.Fatalf("retracted: %+v", k)
	}
}

// ledger status of state_dir: one host, its flock, the records.
func TestFilesStatus(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, t.TempDir())
	s, err := l.Ceremonies(ctx)
	must(t, err)
	must(t, s.SaveOpen(ctx, &Ceremony{ID: "c", Repository: "R", Status: Open}))
	must(t, l.AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: "example.com", KeyTag: 1, Fingerprint: strings.Repeat("a", 64)}))
	st, err := l.Status(ctx)
	must(t, err)
	if st.Backend != "files" || st.Server != nil || st.SchemaVersion != nil || !st.Writable || st.OpenCount != 1 || st.DSEventCount != 1 ||
		!strings.HasPrefix(st.Where, "state_dir ") || len(st.Problems) != 0 {
		t.Fatalf("%+v", st)
	}
	var b strings.Builder
	st.WriteText(&b)
	if st.Log.Entries != 3 || st.Log.Checkpoint != nil || st.Log.Error != "" {
		t.Errorf("log: %+v", st.Log)
	}
	if !regexp.MustCompile(`records: 1 open ceremony, 0 in the history, 1 DS record\nlog: 3 entries, head ledger 3 [A-Z2-7-]{24}; no checkpoint stored\nlock: free\nguarantee: one host: the writers' flock serialises every change of a ceremony\n`).MatchString(b.String()) {
		t.Errorf("text:\n%s", b.String())
	}
}
