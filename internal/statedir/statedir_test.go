package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

func openTemp(t *testing.T) (*Dir, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state")
	d, err := Open(path, true, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func refused(t *testing.T, err error, reason string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, reason) {
		t.Fatalf("want refused (%s), got %v", reason, err)
	}
}

func TestOpenMakesTheFolder2750(t *testing.T) {
	d, path := openTemp(t)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("mode %v, want 2750", fi.Mode())
	}
	sub, err := d.Sub("ds", true)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	fi, _ = os.Lstat(filepath.Join(path, "ds"))
	if fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("subfolder mode %v, want 2750", fi.Mode())
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), false, -1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing, not made: %v", err)
	}
}

func TestOpenRefusesALinkedFolder(t *testing.T) {
	_, path := openTemp(t)
	link := filepath.Join(filepath.Dir(path), "linked")
	os.Symlink(path, link)
	if _, err := Open(link, true, -1); err == nil || !strings.HasSuffix(err.Error(), ": is a symlink; ods-keyguard keeps state only in a real folder") {
		t.Fatalf("linked state_dir: %v", err)
	}
	file := filepath.Join(filepath.Dir(path), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(file, true, -1); err == nil || !strings.HasSuffix(err.Error(), ": not a folder") {
		t.Fatalf("file as state_dir: %v", err)
	}
	d, _ := openTemp(t)
	os.Symlink(t.TempDir(), d.Name("ds"))
	if _, err := d.Sub("ds", true); err == nil || !strings.Contains(err.Error(), "not a folder (a symlink?)") {
		t.Fatalf("linked subfolder: %v", err)
	}
}

func TestReadNeverFollowsASymlink(t *testing.T) {
	d, _ := openTemp(t)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("secret"), 0o600)
	os.Symlink(victim, d.Name("history.json"))
	_, err := d.Read("history.json", 1<<20)
	refused(t, err, "is a symlink")
	if want := "state file " + d.Name("history.json") + ": refused: is a symlink; ods-keyguard does not follow links in state_dir"; err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
}

func TestReadRefusesAFIFOAtOnce(t *testing.T) {
	d, _ := openTemp(t)
	if err := syscall.Mkfifo(d.Name("open.json"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Opened without a writer: a blocking open would never return.
	_, err := d.Read("open.json", 1<<20)
	refused(t, err, "not a regular file (a FIFO)")
}

func TestReadRefusesAFolder(t *testing.T) {
	d, _ := openTemp(t)
	os.Mkdir(d.Name("open.json"), 0o750)
	_, err := d.Read("open.json", 1<<20)
	if err == nil {
		t.Fatal("a folder read as a state file")
	}
}

func TestReadRefusesAForeignOwner(t *testing.T) {
	if os.Getuid() != 0 {
		sandbox.Missing(t, "needs root to give a file away")
	}
	d, _ := openTemp(t)
	os.WriteFile(d.Name("open.json"), []byte("{}"), 0o640)
	if err := os.Chown(d.Name("open.json"), 64124, 64125); err != nil {
		t.Fatal(err)
	}
	_, err := d.Read("open.json", 1<<20)
	refused(t, err, "owned by uid 64124, not by root or state_dir's owner")
	// The folder's owner is trusted as well as root.
	if err := os.Chown(d.Path(), 64124, -1); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(d.Path(), false, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if b, err := d2.Read("open.json", 1<<20); err != nil || string(b) != "{}" {
		t.Fatalf("file of state_dir's owner: %q, %v", b, err)
	}
}

func TestReadIsSizeCapped(t *testing.T) {
	d, _ := openTemp(t)
	// Sparse: the cap is checked before a byte is read.
	f, _ := os.Create(d.Name("history.json"))
	f.Truncate(40 << 30)
	f.Close()
	_, err := d.Read("history.json", 16<<20)
	refused(t, err, "42949672960 bytes, more than the 16 MiB a state file of its kind may hold")
	os.WriteFile(d.Name("small"), []byte("12345"), 0o640)
	if _, err := d.Read("small", 4); err == nil {
		t.Fatal("5 bytes read under a cap of 4")
	}
	if b, err := d.Read("small", 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the cap: %q, %v", b, err)
	}
	if _, err := d.Read("missing", 5); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

func TestWriteAtomic(t *testing.T) {
	d, _ := openTemp(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := d.WriteAtomic("open.json", []byte("one"), FileMode); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(d.Name("open.json"))
	if fi.Mode().Perm() != FileMode {
		t.Fatalf("mode %v under umask 077, want 0640", fi.Mode())
	}
	// A link planted at the name is replaced, never written through.
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("untouched"), 0o600)
	os.Remove(d.Name("open.json"))
	os.Symlink(victim, d.Name("open.json"))
	if err := d.WriteAtomic("open.json", []byte("two"), FileMode); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "untouched" {
		t.Fatalf("written through a link: %q", b)
	}
	if b, err := d.Read("open.json", 10); err != nil || string(b) != "two" {
		t.Fatalf("after replace: %q, %v", b, err)
	}
	// No temporary file is left behind.
	names, _ := os.ReadDir(d.Path())
	if len(names) != 1 {
		t.Fatalf("left in the folder: %v", names)
	}
	// Where nothing can be written, the old file stays whole.
	if os.Getuid() != 0 {
		os.Chmod(d.Path(), 0o550)
		defer os.Chmod(d.Path(), 0o750)
		if err := d.WriteAtomic("open.json", []byte("three"), FileMode); err == nil {
			t.Fatal("written into a read-only folder")
		}
		if b, _ := d.Read("open.json", 10); string(b) != "two" {
			t.Fatalf("after a failed write: %q", b)
		}
	}
}

func TestCreateNeverReplaces(t *testing.T) {
	d, _ := openTemp(t)
	if err := d.Create("key", []byte("first"), FileMode); err != nil {
		t.Fatal(err)
	}
	if err := d.Create("key", []byte("second"), FileMode); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
	if b, _ := d.Read("key", 10); string(b) != "first" {
		t.Fatalf("replaced: %q", b)
	}
	names, _ := d.List("")
	if len(names) != 1 {
		t.Fatalf("left in the folder: %v", names)
	}
}

func TestOpenPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "own")
	d, err := OpenPrivate(path, true)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if fi, _ := os.Lstat(path); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", fi.Mode())
	}
	// Opened to others: somebody else may have made it first.
	os.Chmod(path, 0o755)
	if _, err := OpenPrivate(path, true); err == nil || !strings.HasSuffix(err.Error(), ": not this user's own folder (owner or mode): remove it") {
		t.Fatalf("mode 0755: %v", err)
	}
	if os.Getuid() == 0 {
		os.Chmod(path, 0o700)
		os.Chown(path, 64124, -1)
		if _, err := OpenPrivate(path, true); err == nil || !strings.Contains(err.Error(), "not this user's own folder") {
			t.Fatalf("another owner: %v", err)
		}
	}
}

func TestListAndMove(t *testing.T) {
	d, _ := openTemp(t)
	for _, n := range []string{"b.json", "a.json", ".a.json.tmp1-0", "c.txt"} {
		os.WriteFile(d.Name(n), nil, 0o640)
	}
	names, err := d.List(".json")
	if err != nil || strings.Join(names, " ") != "a.json b.json" {
		t.Fatalf("list: %v, %v", names, err)
	}
	aside, err := d.Sub("refused", true)
	if err != nil {
		t.Fatal(err)
	}
	defer aside.Close()
	to, err := d.MoveTo("a.json", aside)
	if err != nil || !strings.HasSuffix(to, "-a.json") {
		t.Fatalf("move: %q, %v", to, err)
	}
	if err := d.Remove("b.json"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("b.json"); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

// A zone's name is a file name of its own, never a path elsewhere.
func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.": "example.com", ".": "@", "": "@", "../x": "%2E.%2Fx", "a/b": "a%2Fb", "x%y": "x%25y", "a b": "a%20b",
	} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// A subfolder root makes belongs to state_dir's owner, who writes there too.
func TestSubGivenToTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		sandbox.Missing(t, "needs root: only root makes a folder for another user")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 4242, -1); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir, false, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sub, err := d.Sub("publish", true)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	fi, err := os.Stat(filepath.Join(dir, "publish"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 {
		t.Errorf("owner %d, want 4242", st.Uid)
	}
}
