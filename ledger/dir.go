package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// dir is a folder of state files opened once: every file in it is opened
// relative to it (openat), never through a symlink, and must be a regular
// file. The enforcer's user can write state_dir (its hooks record there), so
// a link planted there must not make a root-run ceremony write elsewhere.
type dir struct {
	path string
	f    *os.File
	// owner is state_dir's owner: with root, the only writer whose files
	// are read (see trusted).
	owner int
}

// Modes of what ods-keyguard makes in state_dir. The trust model: state_dir
// belongs to the user the enforcer runs its hooks as (root, or opendnssec
// with <Privileges>), which writes the spool and takes no lock; the
// operator's ceremonies run as root; the monitoring user, in the group,
// only reads. So folders are 2750 and files 0640: a member of the group can
// read everything and change nothing, and the writers' lock is 0600, so a
// reader cannot hold it to stall a ceremony or fake one in progress.
const (
	dirMode   = os.ModeSetgid | 0o750
	fileMode  = 0o640
	lockMode  = 0o600
	noFollow  = syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	createDir = true
)

// openDir opens path, made (with dirMode, and group gid when gid >= 0) when
// create is set and it is missing. It must be a directory, not a symlink.
func openDir(path string, create bool, gid int) (*dir, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("state_dir %s: %w", path, unwrapPath(err))
		}
		if err := os.Mkdir(path, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("state_dir %s: %w", path, unwrapPath(err))
		}
		if gid >= 0 {
			os.Lchown(path, -1, gid) // best effort: only root may give it away
		}
		os.Chmod(path, dirMode)
		fi, err = os.Lstat(path)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("state_dir %s: %w", path, perm.Explain(path, unwrapPath(err)))
	case fi.Mode()&os.ModeSymlink != 0:
		return nil, fmt.Errorf("state_dir %s: is a symlink; ods-keyguard keeps state only in a real folder", path)
	case !fi.IsDir():
		return nil, fmt.Errorf("state_dir %s: not a folder", path)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", path, perm.Explain(path, err))
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("state_dir %s: %w", path, err)
	}
	return &dir{path: path, f: os.NewFile(uintptr(fd), path), owner: int(st.Uid)}, nil
}

// trusted says whether a file owned by uid may be read as a record: one
// made by root (the operator's ceremonies) or by state_dir's owner (the
// enforcer's hooks). Anything else in state_dir was put there by someone
// the trust model does not let write: a group that can write the folder
// (an old 2770 install) or a hand-made file.
func (d *dir) trusted(uid uint32) bool {
	return uid == 0 || int(uid) == d.owner
}

func (d *dir) close() error { return d.f.Close() }

func (d *dir) fd() int { return int(d.f.Fd()) }

func (d *dir) name(file string) string { return filepath.Join(d.path, file) }

// sub opens the subfolder name, made when create is set.
func (d *dir) sub(name string, create bool) (*dir, error) {
	if create {
		if err := syscall.Mkdirat(d.fd(), name, 0o750); err == nil {
			// Setgid, so that files made there keep state_dir's group.
			if fd, err := syscall.Openat(d.fd(), name, syscall.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0); err == nil {
				syscall.Fchmod(fd, uint32(dirMode.Perm())|syscall.S_ISGID)
				syscall.Close(fd)
			}
		} else if !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("state folder %s: %w", d.name(name), err)
		}
	}
	fd, err := syscall.Openat(d.fd(), name, syscall.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("state folder %s: not a folder (a symlink?)", d.name(name))
		}
		return nil, fmt.Errorf("state folder %s: %w", d.name(name), perm.Explain(d.name(name), err))
	}
	return &dir{path: d.name(name), f: os.NewFile(uintptr(fd), d.name(name)), owner: d.owner}, nil
}

// open opens name with flags, never through a symlink and never waiting
// (O_NONBLOCK: a FIFO planted under a state file's name opens at once and
// is refused), and checks that it is a regular file.
func (d *dir) open(name string, flags int, mode uint32) (*os.File, error) {
	fd, err := syscall.Openat(d.fd(), name, flags|noFollow|syscall.O_NONBLOCK, mode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &RefusedError{Path: d.name(name), Reason: "is a symlink; ods-keyguard does not follow links in state_dir"}
		}
		return nil, &os.PathError{Op: "open", Path: d.name(name), Err: perm.Explain(d.name(name), err)}
	}
	f := os.NewFile(uintptr(fd), d.name(name))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &RefusedError{Path: d.name(name), Reason: fmt.Sprintf("not a regular file (%s)", fileType(fi.Mode()))}
	}
	// The descriptor stays non-blocking: harmless on a regular file.
	return f, nil
}

func fileType(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	case m&os.ModeSymlink != 0:
		return "a symlink"
	}
	return m.Type().String()
}

// RefusedError is a file in state_dir that is not read as a record: not a
// regular file, too large, or owned by a user the trust model does not let
// write there.
type RefusedError struct {
	Path   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("state file %s: refused: %s", e.Path, e.Reason)
}

// Size caps: what one state file may hold. A ceremony file or the history
// holds every key of every ceremony; a spool file is one hook run's or one
// release's events.
const (
	maxStateFile = 256 << 20
	maxSpoolFile = 16 << 20
)

// read returns the contents of name, at most max bytes; a missing file is
// os.ErrNotExist. The size and the owner are checked before a byte is read:
// a huge or foreign file is refused at once, never read to its end.
func (d *dir) read(name string, max int64) ([]byte, error) {
	f, err := d.open(name, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", d.name(name), err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !d.trusted(st.Uid) {
		return nil, &RefusedError{Path: d.name(name), Reason: fmt.Sprintf("owned by %s, not by root or state_dir's owner (%s): only they write records",
			perm.User(int(st.Uid)), perm.User(d.owner))}
	}
	if fi.Size() > max {
		return nil, &RefusedError{Path: d.name(name), Reason: fmt.Sprintf("%d bytes, more than the %d MiB a state file of its kind may hold", fi.Size(), max>>20)}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", d.name(name), err)
	}
	if int64(len(b)) > max {
		return nil, &RefusedError{Path: d.name(name), Reason: fmt.Sprintf("grew past %d MiB while read", max>>20)}
	}
	return b, nil
}

// moveTo renames name into the folder to, so that a refused file is
// reported once and no longer read: the writers do this, under the lock.
// The new name starts with the time, so nothing there is replaced.
func (d *dir) moveTo(name string, to *dir) (string, error) {
	dst := time.Now().UTC().Format("20060102T150405Z") + "-" + name
	if err := syscall.Renameat(d.fd(), name, to.fd(), dst); err != nil {
		return "", fmt.Errorf("move %s aside: %w", d.name(name), err)
	}
	return to.name(dst), nil
}

// writeAtomic replaces name with data so that a reader, or a crash, sees
// either the old file or the new one, never a part: a temporary file made
// exclusively in the same folder, fsync, rename over name, fsync of the
// folder. rename replaces a symlink at name; it never writes through it.
func (d *dir) writeAtomic(name string, data []byte, mode uint32) (err error) {
	var tmp string
	var f *os.File
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.tmp%d-%d", name, os.Getpid(), i)
		f, err = d.open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, mode)
		if err == nil || i == 100 || !errors.Is(err, syscall.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), unwrapPath(err))
	}
	defer func() {
		if err != nil {
			f.Close()
			syscall.Unlinkat(d.fd(), tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), unwrapPath(err))
	}
	if err = f.Chmod(os.FileMode(mode)); err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), unwrapPath(err))
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), unwrapPath(err))
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), unwrapPath(err))
	}
	if err = syscall.Renameat(d.fd(), tmp, d.fd(), name); err != nil {
		return fmt.Errorf("write %s: %w", d.name(name), err)
	}
	if err = d.f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", d.name(name), err)
	}
	return nil
}

// list returns the names in the folder that end in suffix and do not start
// with a dot (temporary files), sorted.
func (d *dir) list(suffix string) ([]string, error) {
	fd, err := syscall.Openat(d.fd(), ".", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("state folder %s: %w", d.path, err)
	}
	g := os.NewFile(uintptr(fd), d.path)
	defer g.Close()
	names, err := g.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("state folder %s: %w", d.path, err)
	}
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, ".") && strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// remove removes name; a missing file is no error.
func (d *dir) remove(name string) error {
	if err := syscall.Unlinkat(d.fd(), name); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove %s: %w", d.name(name), err)
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
