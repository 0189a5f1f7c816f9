package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// The ceremony's steps, end to end, on a fake enforcer and fake tokens:
// every refusal a few lines each. The same steps against a real
// ods-enforcerd and SoftHSMv2 are the backup_*.txtar scripts.

// fakeEnforcer does to the fake's state what ods-enforcer's backup
// commands do to the database: prepare flags Required keys Prepared,
// commit makes Prepared keys Done, rollback makes them Required again.
type fakeEnforcer struct {
	f     *inventorytest.Fake
	calls []string
	fail  map[string]error // by subcommand: prepare, commit, rollback
}

func (e *fakeEnforcer) Run(_ context.Context, args ...string) (string, error) {
	e.calls = append(e.calls, strings.Join(args, " "))
	if len(args) != 4 || args[0] != "backup" || args[2] != "-r" {
		return "", fmt.Errorf("fake ods-enforcer: unexpected %q", args)
	}
	if err := e.fail[args[1]]; err != nil {
		return "", err
	}
	from, to := map[string][2]enforcer.BackupState{
		"prepare":  {enforcer.BackupRequired, enforcer.BackupPrepared},
		"commit":   {enforcer.BackupPrepared, enforcer.BackupDone},
		"rollback": {enforcer.BackupPrepared, enforcer.BackupRequired},
	}[args[1]][0], map[string]enforcer.BackupState{
		"prepare": enforcer.BackupPrepared, "commit": enforcer.BackupDone, "rollback": enforcer.BackupRequired,
	}[args[1]]
	for _, k := range e.f.St.Keys {
		if k.Repository == args[3] && k.State != enforcer.Delete && k.Backup == from {
			k.Backup = to
		}
	}
	return "", nil
}

// lab is a repository R with a token and a mirror "b", a KSK in use and
// a ZSK in the pool, both made since the last ceremony (there is none),
// and a backup token "vault" that holds what the operator copied onto it.
type lab struct {
	w   *inventorytest.World
	f   *inventorytest.Fake
	enf *fakeEnforcer
	env *Env
	out *bytes.Buffer
	ksk *enforcer.Key
	zsk *enforcer.Key
	// released counts the runs of Env.Release.
	released int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	w := inventorytest.NewWorld(t)
	ksk := w.Key("R", "a1", enforcer.KSK, enforcer.BackupRequired)
	w.Assign("example.com", ksk, enforcer.DSSubmit, true)
	zsk := w.Key("R", "b2", enforcer.ZSK, enforcer.BackupRequired)
	f := inventorytest.New(w.St)
	f.Put([]hsmcheck.Key{w.Pair(ksk), w.Pair(zsk)}, "R", "b")
	l := &lab{w: w, f: f, enf: &fakeEnforcer{f: f, fail: map[string]error{}}, out: &bytes.Buffer{}, ksk: ksk, zsk: zsk}
	l.env = &Env{Ledger: ledgertest.New(t), Source: f, CLI: l.enf, Repositories: map[string]Repository{"R": {RequireBackup: true, TokenLabel: "R"}},
		Tokens: inventorytest.Tokens("R", "b"), Out: l.out,
		BackupToken: func(name string) (hsmcheck.Token, error) {
			if name != "vault" {
				return hsmcheck.Token{}, fmt.Errorf("no backup token %q is configured", name)
			}
			return inventorytest.BackupToken(name), nil
		},
		Release: func(context.Context) error { l.released++; return nil }}
	return l
}

// backup is the operator's steps 2-6: every key of R onto the backup
// token.
func (l *lab) backup() { l.f.Put(l.f.Holds["R"], "vault") }

func (l *lab) store(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := l.env.Ledger.Ceremonies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused asserts that err is a refusal saying want.
func refused(t *testing.T, err error, want string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(err.Error(), want) {
		t.Fatalf("want a refusal saying %q, got %T %v", want, err, err)
	}
}

func TestCeremonyLifecycle(t *testing.T) {
	ctx := t.Context()
	l := newLab(t)
	opened, err := Prepare(ctx, l.env, []string{"R"}, "alice")
	if err != nil || len(opened) != 1 {
		t.Fatalf("prepare: %v (%d opened)", err, len(opened))
	}
	c := opened[0]
	if len(c.Keys) != 2 || c.Keys[0].Fingerprint != l.w.Pair(l.ksk).Fingerprint || l.ksk.Backup != enforcer.BackupPrepared {
		t.Fatalf("manifest %+v, KSK %s", c.Keys, l.ksk.Backup)
	}
	if !strings.Contains(l.out.String(), "ods-keyguard backup done -r R --backup-token NAME") {
		t.Errorf("prepare does not say what comes next:\n%s", l.out)
	}
	l.backup()
	done, err := Done(ctx, l.env, nil, "vault", "bob")
	if err != nil || len(done) != 1 {
		t.Fatalf("done: %v", err)
	}
	if l.ksk.Backup != enforcer.BackupDone || l.zsk.Backup != enforcer.BackupDone || l.released != 1 {
		t.Errorf("after done: KSK %s, ZSK %s, %d releases", l.ksk.Backup, l.zsk.Backup, l.released)
	}
	if got := strings.Join(l.enf.calls, ", "); got != "backup prepare -r R, backup commit -r R" {
		t.Errorf("enforcer calls: %s", got)
	}
	s := l.store(t)
	if h := s.LastConfirmed("R"); h == nil || h.BackupToken == nil || h.BackupToken.Name != "vault" || h.EndOperator != "bob" || s.Open("R") != nil {
		t.Errorf("history: %+v, open %v", h, s.Open("R"))
	}
	if s.Coverage().Covering("R", l.zsk.Locator) == nil {
		t.Error("the pool key is not covered after the ceremony")
	}
	// Nothing new since: the next ceremony is a scheduled backup of both.
	l.out.Reset()
	if _, err := Prepare(ctx, l.env, []string{"R"}, "alice"); err != nil || !strings.Contains(l.out.String(), "a scheduled backup of every needed key") {
		t.Errorf("scheduled prepare: %v\n%s", err, l.out)
	}
}

// Prepare refuses, and leaves the enforcer as it found it.
func TestPrepareRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*lab)
		want  string
		calls string // ods-enforcer calls made
	}{
		{"missing from the mirror", func(l *lab) { l.f.Remove(l.zsk.Locator, "b") },
			`key b2 (ZSK) is missing from mirror "b"`, "backup prepare -r R, backup rollback -r R"},
		{"another key pair on the mirror", func(l *lab) {
			l.f.Remove(l.ksk.Locator, "b")
			l.f.Put([]hsmcheck.Key{inventorytest.NewKey(t, l.ksk.Locator)}, "b")
		}, `key a1 (KSK) differs between tokens: mirror "b" holds another key pair`, "backup prepare -r R, backup rollback -r R"},
		{"already open", func(l *lab) {
			if _, err := Prepare(t.Context(), l.env, []string{"R"}, "carol"); err != nil {
				t.Fatal(err)
			}
			l.enf.calls = nil
		}, "is already open (prepared ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			tt.setup(l)
			_, err := Prepare(t.Context(), l.env, []string{"R"}, "alice")
			refused(t, err, tt.want)
			if got := strings.Join(l.enf.calls, ", "); got != tt.calls {
				t.Errorf("enforcer calls: %q, want %q", got, tt.calls)
			}
			if tt.calls != "" && (l.ksk.Backup != enforcer.BackupRequired || l.store(t).Open("R") != nil) {
				t.Errorf("left the KSK %s, open %v", l.ksk.Backup, l.store(t).Open("R"))
			}
		})
	}
	// A token that cannot be read: an error (not a refusal, UNKNOWN to a
	// script), the enforcer rolled back, nothing recorded.
	l := newLab(t)
	l.f.TokenErr["b"] = errors.New("login: CKR_PIN_INCORRECT")
	if _, err := Prepare(t.Context(), l.env, []string{"R"}, "alice"); err == nil || !strings.Contains(err.Error(), `repository "R": not prepared: login: CKR_PIN_INCORRECT`) {
		t.Errorf("unreadable mirror: %v", err)
	}
	if l.ksk.Backup != enforcer.BackupRequired || l.store(t).Open("R") != nil {
		t.Error("an unreadable mirror left the ceremony or the flags behind")
	}
	// The enforcer refuses its prepare: nothing recorded.
	l = newLab(t)
	l.enf.fail["prepare"] = errors.New("ods-enforcer backup prepare -r R: exit status 1")
	if _, err := Prepare(t.Context(), l.env, []string{"R"}, "alice"); err == nil || l.store(t).Open("R") != nil {
		t.Errorf("enforcer refused prepare: %v, open %v", err, l.store(t).Open("R"))
	}
}

// Done refuses to commit what it could not verify, and says what state
// it leaves.
func TestDoneRefusals(t *testing.T) {
	tests := []struct {
		name   string
		change func(*lab)
		token  string
		want   string
	}{
		{"backup token lacks a key", func(l *lab) { l.f.Remove(l.zsk.Locator, "vault") }, "vault",
			`key b2 (ZSK) is missing from backup token "vault"`},
		{"another key pair on the backup token", func(l *lab) {
			l.f.Remove(l.ksk.Locator, "vault")
			l.f.Put([]hsmcheck.Key{inventorytest.NewKey(t, l.ksk.Locator)}, "vault")
		}, "vault", "key a1 (KSK)"},
		{"a key gone from the HSM since prepare", func(l *lab) { l.f.Remove(l.ksk.Locator, "R") }, "vault",
			`key a1 (KSK) is missing from repository "R"`},
		{"backup prepare run again by hand", func(l *lab) {
			l.w.Key("R", "c3", enforcer.ZSK, enforcer.BackupPrepared)
		}, "vault", "the enforcer has 1 Prepared keys that are not in the manifest (backup prepare run by hand?): [c3]"},
		{"backup rollback run by hand", func(l *lab) { l.zsk.Backup = enforcer.BackupRequired }, "vault",
			"1 manifest key is no longer Prepared in the enforcer (backup rollback run by hand?): [b2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			if _, err := Prepare(t.Context(), l.env, []string{"R"}, "alice"); err != nil {
				t.Fatal(err)
			}
			l.backup()
			tt.change(l)
			l.enf.calls = nil
			_, err := Done(t.Context(), l.env, nil, tt.token, "bob")
			refused(t, err, tt.want)
			refused(t, err, "not confirmed, nothing committed")
			if len(l.enf.calls) != 0 || l.released != 0 || l.store(t).Open("R") == nil || l.store(t).LastConfirmed("R") != nil {
				t.Errorf("a refused done acted: calls %v, %d releases, open %v", l.enf.calls, l.released, l.store(t).Open("R"))
			}
		})
	}
	l := newLab(t)
	if _, err := Done(t.Context(), l.env, nil, "vault", "bob"); err == nil {
		t.Error("done with no ceremony open")
	} else {
		refused(t, err, "nothing to do: no backup ceremony is open")
	}
	if _, err := Prepare(t.Context(), l.env, []string{"R"}, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := Done(t.Context(), l.env, nil, "nosuch", "bob"); err == nil || !strings.Contains(err.Error(), `no backup token "nosuch"`) || l.ksk.Backup != enforcer.BackupPrepared {
		t.Errorf("unknown backup token: %v", err)
	}
	// The backup token cannot be read: not a refusal, nothing committed.
	l.backup()
	l.f.TokenErr["vault"] = errors.New("login: CKR_TOKEN_NOT_PRESENT")
	if _, err := Done(t.Context(), l.env, nil, "vault", "bob"); err == nil || !strings.Contains(err.Error(), "nothing committed: login: CKR_TOKEN_NOT_PRESENT") || l.ksk.Backup != enforcer.BackupPrepared {
		t.Errorf("unreadable backup token: %v", err)
	}
}

// The enforcer's commit fails: unreachable leaves the ceremony open as it
// was; any other failure leaves it committing, and a later done that finds
// the keys Done records it without committing twice.
func TestDoneCommitFails(t *testing.T) {
	ctx := t.Context()
	l := newLab(t)
	if _, err := Prepare(ctx, l.env, []string{"R"}, "alice"); err != nil {
		t.Fatal(err)
	}
	l.backup()
	l.enf.fail["commit"] = fmt.Errorf("ods-enforcer backup commit -r R: %w", enforcer.ErrUnreachable)
	if _, err := Done(ctx, l.env, nil, "vault", "bob"); err == nil || !strings.Contains(err.Error(), "not confirmed, nothing committed, still open") {
		t.Fatalf("unreachable: %v", err)
	}
	if c := l.store(t).Open("R"); c == nil || c.Status != ledger.Open {
		t.Fatalf("after an unreachable enforcer: %+v", c)
	}
	l.enf.fail["commit"] = errors.New("ods-enforcer backup commit -r R: killed")
	if _, err := Done(ctx, l.env, nil, "vault", "bob"); err == nil || !strings.Contains(err.Error(), "the commit's outcome unknown (run backup done again)") {
		t.Fatalf("killed commit: %v", err)
	}
	if c := l.store(t).Open("R"); c == nil || c.Status != ledger.Committing {
		t.Fatalf("after a killed commit: %+v", c)
	}
	// The commit happened after all (the enforcer had done it).
	for _, k := range l.f.St.Keys {
		k.Backup = enforcer.BackupDone
	}
	delete(l.enf.fail, "commit")
	l.enf.calls = nil
	if done, err := Done(ctx, l.env, nil, "vault", "bob"); err != nil || len(done) != 1 || len(l.enf.calls) != 0 {
		t.Errorf("done after the commit: %v, calls %v", err, l.enf.calls)
	}
}

// Rollback unflags the enforcer and abandons the ceremony; it refuses one
// whose keys the enforcer has Done already.
func TestRollbackSteps(t *testing.T) {
	ctx := t.Context()
	l := newLab(t)
	if _, err := Prepare(ctx, l.env, []string{"R"}, "alice"); err != nil {
		t.Fatal(err)
	}
	l.ksk.Backup = enforcer.BackupDone // ods-enforcer backup commit run by hand
	if _, err := Rollback(ctx, l.env, nil, "bob", "test"); err == nil || !strings.Contains(err.Error(), "committed by hand?") {
		t.Errorf("rollback of a committed ceremony: %v", err)
	}
	l.ksk.Backup = enforcer.BackupPrepared
	if ab, err := Rollback(ctx, l.env, nil, "bob", "test"); err != nil || len(ab) != 1 {
		t.Fatalf("rollback: %v", err)
	}
	if l.ksk.Backup != enforcer.BackupRequired || l.store(t).Open("R") != nil {
		t.Errorf("after rollback: KSK %s, open %v", l.ksk.Backup, l.store(t).Open("R"))
	}
	_, err := Rollback(ctx, l.env, nil, "bob", "test")
	refused(t, err, "nothing to roll back")
}
