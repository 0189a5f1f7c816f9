package pinlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// The reader's children are this test binary, serving hsmcheck's child
// command on the real module.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == hsmcheck.ChildCommand {
		if err := hsmcheck.ServeChild(os.Stdin, os.Stdout, hsmcheck.OpenModule); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The record of refused PINs, through hsmcheck's real Reader on a real
// SoftHSMv2 token: a refused PIN is recorded and not tried again until its
// source changes or it is cleared; a store that cannot record keeps the
// token untouched.

// recordedToken is a SoftHSMv2 token ods-a (PIN 1234) given pin from a
// pin file, with the record in dir/state.
func recordedToken(t *testing.T, dir, pin string) (hsmcheck.Token, string) {
	t.Helper()
	if _, err := os.Stat(sandbox.Module); err != nil {
		sandbox.Missing(t, "needs SoftHSMv2: %v", err)
	}
	conf, err := sandbox.SoftHSM(filepath.Join(dir, "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.InitToken(conf, "ods-a", "1234"); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "site-b.pin")
	if err := os.WriteFile(src, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := hsmcheck.Token{
		Name: "ods-a", Kind: hsmcheck.KindRepository, Repository: "ods-a",
		Module: sandbox.Module, Label: "ods-a", PIN: secret.Value(pin), PINSource: src,
		Logins: &Store{Dir: filepath.Join(dir, "state"), Group: -1},
		Env:    map[string]string{"SOFTHSM2_CONF": conf},
	}
	return tok, src
}

func pinOf(s string) secret.Value { return secret.Value(s) }

func readOne(t *testing.T, tok hsmcheck.Token) error {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := hsmcheck.Reader{Exe: []string{self, hsmcheck.ChildCommand}}
	return r.Read(ctx, []hsmcheck.Token{tok}, hsmcheck.Request{})[0].Err
}

func store(tok hsmcheck.Token) *Store { return tok.Logins.(*Store) }

func resetRun() {
	runRefusals.Lock()
	runRefusals.m = map[string]Refusal{}
	runRefusals.Unlock()
	logins.Lock()
	logins.m = map[string]int{}
	logins.Unlock()
}

func TestRefusalRecordsAndRefuses(t *testing.T) {
	resetRun()
	dir := t.TempDir()
	tok, src := recordedToken(t, dir, "9999")
	err := readOne(t, tok)
	if err == nil || !strings.Contains(err.Error(), "login: CKR_PIN_INCORRECT; recorded in ") {
		t.Fatalf("first read: %v", err)
	}
	if loginCount(tok) != 1 {
		t.Fatalf("logins asked: %d, want 1", loginCount(tok))
	}
	data, err := os.ReadFile(filepath.Join(dir, "state", RefusalsFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "9999") {
		t.Fatal("the refused PIN is in the record")
	}
	// A later run (the memory of this one forgotten) is refused from the record.
	for i := 0; i < 5; i++ {
		resetRun()
		var re *RefusedError
		if err := readOne(t, tok); !errors.As(err, &re) || re.Refusal.Error != "CKR_PIN_INCORRECT" {
			t.Fatalf("run %d: %v", i, err)
		}
		if loginCount(tok) != 0 {
			t.Fatalf("run %d logged in", i)
		}
	}
	// The source rewritten with the right PIN: read.
	resetRun()
	if err := os.WriteFile(src, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.PIN = pinOf("1234")
	if err := readOne(t, tok); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	// The same wrong PIN from a touched file is tried once more, then
	// cleared by the operator's command, tried once more.
	resetRun()
	tok.PIN = pinOf("9999")
	os.WriteFile(src, []byte("9999\n"), 0o600)
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "recorded in") {
		t.Fatalf("changed source: %v", err)
	}
	gone, err := store(tok).Clear("ods-a")
	if err != nil || len(gone) != 1 {
		t.Fatalf("clear: %v, %v", gone, err)
	}
	resetRun()
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "recorded in") {
		t.Fatalf("after clear: %v", err)
	}
	if loginCount(tok) != 1 {
		t.Fatalf("logins after clear: %d", loginCount(tok))
	}
}

func TestRefusalInOneRunAsksOnce(t *testing.T) {
	resetRun()
	dir := t.TempDir()
	tok, _ := recordedToken(t, dir, "9999")
	// Recording fails (every temporary name the record could take is
	// taken): the run still does not ask again.
	for i := 0; i <= 100; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "state", fmt.Sprintf(".%s.tmp%d-%d", RefusalsFile, os.Getpid(), i)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	err := readOne(t, tok)
	if err == nil || !strings.Contains(err.Error(), "could not be recorded") {
		t.Fatalf("first: %v", err)
	}
	var re *RefusedError
	if err := readOne(t, tok); !errors.As(err, &re) {
		t.Fatalf("second in the run: %v", err)
	}
	if loginCount(tok) != 1 {
		t.Fatalf("logins: %d", loginCount(tok))
	}
}

func TestRefusalSymlinksAndDamage(t *testing.T) {
	resetRun()
	dir := t.TempDir()
	tok, _ := recordedToken(t, dir, "1234")
	state := filepath.Join(dir, "state")
	// The install's key, as the first refusal makes it; from then on
	// every read looks at the record.
	if _, err := store(tok).key(true); err != nil {
		t.Fatal(err)
	}
	// A link planted where the record goes is not followed.
	os.Symlink("/etc/passwd", filepath.Join(state, RefusalsFile))
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Fatalf("symlink: %v", err)
	}
	os.Remove(filepath.Join(state, RefusalsFile))
	// A damaged record is named, never replaced.
	os.WriteFile(filepath.Join(state, RefusalsFile), []byte("{nonsense"), 0o640)
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "not a record of refused PINs") {
		t.Fatalf("damaged: %v", err)
	}
	// A state_dir that is a link is refused.
	os.RemoveAll(state)
	os.Symlink(t.TempDir(), state)
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Fatalf("state_dir link: %v", err)
	}
}

// The record is read as state_dir's other records are: only a file made by
// root or state_dir's owner, and a FIFO in its place fails at once instead
// of stalling every token read.
func TestRefusalReadsOnlyTrustedRecords(t *testing.T) {
	resetRun()
	dir := t.TempDir()
	tok, _ := recordedToken(t, dir, "1234")
	state := filepath.Join(dir, "state")
	if _, err := store(tok).key(true); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(state, RefusalsFile)
	os.Remove(record)
	if err := syscall.Mkfifo(record, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "refused: not a regular file (a FIFO)") {
		t.Fatalf("fifo: %v", err)
	}
	os.Remove(record)
	if os.Getuid() != 0 {
		sandbox.Missing(t, "needs root to give a record away")
	}
	// A record planted by a user who may not write records (an old 2770
	// state_dir's group) is not believed, nor is the token logged in to.
	os.WriteFile(record, []byte(`{"format":"ods-keyguard/pin-refusals/1","refusals":[]}`), 0o640)
	os.Chown(record, 64124, 64125)
	n := loginCount(tok)
	if err := readOne(t, tok); err == nil || !strings.Contains(err.Error(), "not logging in: state file "+record+": refused: owned by uid 64124") {
		t.Fatalf("foreign record: %v", err)
	}
	if loginCount(tok) != n {
		t.Fatal("logged in past a record it could not trust")
	}
}

// Admitting a login makes nothing: the record's folder and its key come
// with the first refused PIN, so a monitoring user whose PINs are right
// leaves no folder in /var/tmp (no token needed: the refusal is handed in).
func TestAdmitMakesNothingUntilARefusal(t *testing.T) {
	resetRun()
	dir := filepath.Join(t.TempDir(), "state")
	s := &Store{Dir: dir, Group: -1}
	tok := hsmcheck.Token{Name: "ods-a", Kind: hsmcheck.KindRepository, Module: "/m.so", Label: "ods-a", PIN: pinOf("9999"), PINSource: filepath.Join(t.TempDir(), "pin"), Logins: s}
	adm, err := s.Admit(tok)
	if err != nil || adm == nil {
		t.Fatalf("admit: %v, %v", adm, err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admitting made %s: %v", dir, err)
	}
	err = adm.Refused(tok, "CKR_PIN_INCORRECT", errors.New("login: CKR_PIN_INCORRECT"))
	if err == nil || !strings.Contains(err.Error(), "recorded in "+filepath.Join(dir, RefusalsFile)) {
		t.Fatalf("refused: %v", err)
	}
	for _, f := range []string{RefusalsFile, refusalsKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after a refusal: %v", err)
		}
	}
	resetRun()
	var re *RefusedError
	if _, err := s.Admit(tok); !errors.As(err, &re) {
		t.Errorf("the refused PIN admitted again: %v", err)
	}
	// A folder that cannot be made: not admitted, nothing tried.
	resetRun()
	ro := &Store{Dir: "/proc/ods-keyguard-none/state", Group: -1}
	tok.Logins = ro
	if _, err := ro.Admit(tok); err == nil || !strings.Contains(err.Error(), "not logging in, since a refused PIN could not be recorded") {
		t.Errorf("unrecordable: %v", err)
	}
}
