// Package statedir owns ods-keyguard's state folder (state_dir): how it is
// made, how a state file in it is read and how one is written. Every file is
// opened relative to the folder (openat), never through a symlink and never
// waiting on a FIFO, must be a regular file, is size-capped, and is read only
// when root or the folder's owner made it. Writes are atomic: a reader, or a
// crash, sees the old file or the new one, never a part.
//
// The trust model: state_dir belongs to the user the enforcer runs its hooks
// as (root, or opendnssec with <Privileges>), which writes the spool and
// takes no lock; the operator's ceremonies run as root; the monitoring user,
// in the group, only reads. So folders are 2750 and files 0640: a member of
// the group can read everything and change nothing, and a writers' lock is
// 0600, so a reader cannot hold it to stall a ceremony or fake one in
// progress. The enforcer's user can write state_dir, so a link planted there
// must not make a root-run ceremony write elsewhere.
package statedir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// Modes of what ods-keyguard makes in state_dir (see the package doc).
const (
	DirMode  = os.ModeSetgid | 0o750
	FileMode = 0o640
	LockMode = 0o600
	// PrivateMode is a user's own folder (a record kept by a user that
	// cannot write state_dir).
	PrivateMode = 0o700
)

const noFollow = syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// Dir is a state folder opened once: every file in it is opened relative
// to it.
type Dir struct {
	path string
	f    *os.File
	// owner is the folder's owner: with root, the only writer whose files
	// are read (see Trusted).
	owner int
}

// Open opens the state folder path, made (with DirMode, and group gid when
// gid >= 0) when create is set and it is missing. It must be a folder, not
// a symlink.
func Open(path string, create bool, gid int) (*Dir, error) {
	return open(path, create, gid, false)
}

// OpenPrivate opens path as this user's own state folder, made 0700 when
// create is set and it is missing. It must belong to this user and be
// closed to everyone else: in a shared folder such as /var/tmp anyone may
// make a folder of that name first.
func OpenPrivate(path string, create bool) (*Dir, error) {
	return open(path, create, -1, true)
}

func open(path string, create bool, gid int, private bool) (*Dir, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("state_dir %s: %w", path, unwrapPath(err))
		}
		mode := os.FileMode(0o750)
		if private {
			mode = PrivateMode
		}
		if err := os.Mkdir(path, mode); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("state_dir %s: %w", path, unwrapPath(err))
		}
		if gid >= 0 {
			os.Lchown(path, -1, gid) // best effort: only root may give it away
		}
		if !private {
			// Setgid, so that files made there keep its group.
			os.Chmod(path, DirMode)
		}
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
	if private && (int(st.Uid) != os.Getuid() || st.Mode&0o077 != 0) {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s: not this user's own folder (owner or mode): remove it", path)
	}
	return &Dir{path: path, f: os.NewFile(uintptr(fd), path), owner: int(st.Uid)}, nil
}

// Path is the folder's path.
func (d *Dir) Path() string { return d.path }

// Name is the path of the file name in the folder.
func (d *Dir) Name(file string) string { return filepath.Join(d.path, file) }

// Owner is the uid that owns the folder.
func (d *Dir) Owner() int { return d.owner }

// Fd is the folder's descriptor, for flock and *at calls.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Stat describes the folder as opened.
func (d *Dir) Stat() (os.FileInfo, error) { return d.f.Stat() }

// Sync makes the folder's entries durable.
func (d *Dir) Sync() error { return d.f.Sync() }

// Close closes the folder.
func (d *Dir) Close() error { return d.f.Close() }

// Trusted says whether a file owned by uid may be read as a record: one
// made by root (the operator's ceremonies) or by the folder's owner (the
// enforcer's hooks). Anything else there was put there by someone the
// trust model does not let write: a group that can write the folder (an
// old 2770 install) or a hand-made file.
func (d *Dir) Trusted(uid uint32) bool {
	return uid == 0 || int(uid) == d.owner
}

// Sub opens the subfolder name, made (DirMode) when create is set. One
// that root makes is given to the folder's owner: the enforcer's user
// writes there too.
func (d *Dir) Sub(name string, create bool) (*Dir, error) {
	if create {
		if err := syscall.Mkdirat(d.Fd(), name, 0o750); err == nil {
			// Setgid, so that files made there keep state_dir's group.
			if fd, err := syscall.Openat(d.Fd(), name, syscall.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0); err == nil {
				syscall.Fchmod(fd, uint32(DirMode.Perm())|syscall.S_ISGID)
				if os.Geteuid() == 0 && d.owner != 0 {
					syscall.Fchown(fd, d.owner, -1)
				}
				syscall.Close(fd)
			}
		} else if !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("state folder %s: %w", d.Name(name), err)
		}
	}
	fd, err := syscall.Openat(d.Fd(), name, syscall.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("state folder %s: not a folder (a symlink?)", d.Name(name))
		}
		return nil, fmt.Errorf("state folder %s: %w", d.Name(name), perm.Explain(d.Name(name), err))
	}
	return &Dir{path: d.Name(name), f: os.NewFile(uintptr(fd), d.Name(name)), owner: d.owner}, nil
}

// OpenFile opens name with flags, never through a symlink and never
// waiting (O_NONBLOCK: a FIFO planted under a state file's name opens at
// once and is refused), and checks that it is a regular file. A missing
// file is an error that is os.ErrNotExist.
func (d *Dir) OpenFile(name string, flags int, mode uint32) (*os.File, error) {
	fd, err := syscall.Openat(d.Fd(), name, flags|noFollow|syscall.O_NONBLOCK, mode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &RefusedError{Path: d.Name(name), Reason: "is a symlink; ods-keyguard does not follow links in state_dir"}
		}
		return nil, &os.PathError{Op: "open", Path: d.Name(name), Err: perm.Explain(d.Name(name), err)}
	}
	f := os.NewFile(uintptr(fd), d.Name(name))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &RefusedError{Path: d.Name(name), Reason: fmt.Sprintf("not a regular file (%s)", fileType(fi.Mode()))}
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

// RefusedError is a file in a state folder that is not read as a record:
// a symlink, not a regular file, too large, or owned by a user the trust
// model does not let write there.
type RefusedError struct {
	Path   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("state file %s: refused: %s", e.Path, e.Reason)
}

// Read returns the contents of name, at most max bytes; a missing file is
// an error that is os.ErrNotExist. The size and the owner are checked
// before a byte is read: a huge or foreign file is refused at once, never
// read to its end.
func (d *Dir) Read(name string, max int64) ([]byte, error) {
	f, err := d.OpenFile(name, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", d.Name(name), err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !d.Trusted(st.Uid) {
		return nil, &RefusedError{Path: d.Name(name), Reason: fmt.Sprintf("owned by %s, not by root or state_dir's owner (%s): only they write records",
			perm.User(int(st.Uid)), perm.User(d.owner))}
	}
	if fi.Size() > max {
		return nil, &RefusedError{Path: d.Name(name), Reason: fmt.Sprintf("%d bytes, more than the %s a state file of its kind may hold", fi.Size(), size(max))}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", d.Name(name), err)
	}
	if int64(len(b)) > max {
		return nil, &RefusedError{Path: d.Name(name), Reason: fmt.Sprintf("grew past %s while read", size(max))}
	}
	return b, nil
}

// size renders a cap: whole MiB where it is one.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// MoveTo renames name into the folder to, so that a refused file is
// reported once and no longer read: the writers do this, under their lock.
// The new name starts with the time, so nothing there is replaced.
func (d *Dir) MoveTo(name string, to *Dir) (string, error) {
	dst := time.Now().UTC().Format("20060102T150405Z") + "-" + name
	if err := syscall.Renameat(d.Fd(), name, to.Fd(), dst); err != nil {
		return "", fmt.Errorf("move %s aside: %w", d.Name(name), err)
	}
	return to.Name(dst), nil
}

// writeTemp writes data with mode to a new temporary file in the folder,
// made exclusively and synced, and returns its name.
func (d *Dir) writeTemp(name string, data []byte, mode uint32) (tmp string, err error) {
	d.sweepTemp(name)
	var f *os.File
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.tmp%d-%d", name, os.Getpid(), i)
		f, err = d.OpenFile(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, mode)
		if err == nil || i == 100 || !errors.Is(err, syscall.EEXIST) {
			break
		}
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			// What blocks making a file is the folder.
			return "", perm.Explain(d.path, errno)
		}
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(os.FileMode(mode)) // the umask may have taken bits
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", errors.Join(unwrapPath(err), d.removeTemp(tmp))
	}
	return tmp, nil
}

// removeTemp removes a temporary file on a failure path; an error only
// when it stays behind (a full btrfs can refuse even an unlink).
func (d *Dir) removeTemp(tmp string) error {
	for {
		err := syscall.Unlinkat(d.Fd(), tmp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == nil || errors.Is(err, syscall.ENOENT):
			return nil
		}
		return fmt.Errorf("temporary file %s stays behind: %w", d.Name(tmp), err)
	}
}

// sweepTemp removes the temporary files for name that a writer left when
// it was killed between making one and renaming it (".NAME.tmpPID-N"
// whose PID is no live process): they hold nothing anybody reads.
func (d *Dir) sweepTemp(name string) {
	prefix := "." + name + ".tmp"
	fd, err := syscall.Openat(d.Fd(), ".", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	g := os.NewFile(uintptr(fd), d.path)
	defer g.Close()
	names, _ := g.Readdirnames(-1)
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, prefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 || p == os.Getpid() {
			continue
		}
		if syscall.Kill(p, 0) == syscall.ESRCH {
			d.removeTemp(n)
		}
	}
}

// WriteAtomic replaces name with data (mode) so that a reader, or a crash,
// sees either the old file or the new one, never a part: a temporary file
// made exclusively in the same folder, fsync, rename over name, fsync of
// the folder. rename replaces a symlink at name; it never writes through
// it.
func (d *Dir) WriteAtomic(name string, data []byte, mode uint32) error {
	tmp, err := d.writeTemp(name, data, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", d.Name(name), err)
	}
	if err := syscall.Renameat(d.Fd(), tmp, d.Fd(), name); err != nil {
		return fmt.Errorf("write %s: %w", d.Name(name), errors.Join(err, d.removeTemp(tmp)))
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", d.Name(name), err)
	}
	return nil
}

// Create makes name with data (mode) when it does not exist, whole or not
// at all: a temporary file linked into place, so that of two processes
// making it at once one wins and the other gets an error that is
// os.ErrExist. Unlike WriteAtomic it never replaces what is there.
func (d *Dir) Create(name string, data []byte, mode uint32) error {
	tmp, err := d.writeTemp(name, data, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", d.Name(name), err)
	}
	for {
		err = unix.Linkat(d.Fd(), tmp, d.Fd(), name, 0)
		if err != unix.EINTR {
			break
		}
	}
	if rerr := d.removeTemp(tmp); err == nil && rerr != nil {
		return fmt.Errorf("write %s: %w", d.Name(name), rerr)
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: d.Name(name), Err: err}
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", d.Name(name), err)
	}
	return nil
}

// List returns the names in the folder that end in suffix and do not
// start with a dot (temporary files), sorted.
func (d *Dir) List(suffix string) ([]string, error) {
	fd, err := syscall.Openat(d.Fd(), ".", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
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

// Remove removes name; a missing file is no error.
func (d *Dir) Remove(name string) error {
	if err := syscall.Unlinkat(d.Fd(), name); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove %s: %w", d.Name(name), err)
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

// SafeName turns a name from outside (a zone's, say) into a file name of
// its own in a state folder: lower case, without a final dot, every byte
// but letters, digits, '-', '_' and an inner '.' written %XX, the root (or
// an empty name) as "@". Two names that differ only in case are one file.
func SafeName(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return "@"
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Flock takes an exclusive flock on name (made LockMode when missing, and
// given to the folder's owner when root made it, so that the enforcer's
// user and root share it), trying until wait has passed or ctx ends.
// Unlock with the returned function. The error names the holder's pid
// where /proc/locks shows it.
func (d *Dir) Flock(ctx context.Context, name string, wait time.Duration) (func(), error) {
	f, err := d.OpenFile(name, syscall.O_RDONLY|syscall.O_CREAT, LockMode)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", d.Name(name), unwrapPath(err))
	}
	if fi, err := f.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 && os.Geteuid() == 0 && d.owner != 0 {
			f.Chown(d.owner, -1)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", d.Name(name), err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.Close()
			return nil, &BusyError{Path: d.Name(name), Wait: wait}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// BusyError is a lock another process held for longer than the wait.
type BusyError struct {
	Path string
	Wait time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("lock %s: held by another process for over %s", e.Path, e.Wait)
}

// Keep makes name in the folder the very file f was opened on, whatever
// has been renamed over its path since: a hard link through
// /proc/self/fd. Where no link can be made (another file system, a file
// of another user under fs.protected_hardlinks, no /proc) it is a copy,
// made whole or not at all, and copied says so. name must not exist.
func (d *Dir) Keep(f *os.File, name string) (copied bool, err error) {
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	for {
		err = unix.Linkat(unix.AT_FDCWD, src, d.Fd(), name, unix.AT_SYMLINK_FOLLOW)
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		return false, d.f.Sync()
	}
	if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("keep %s as %s: %w", f.Name(), d.Name(name), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return true, fmt.Errorf("keep %s: %w", f.Name(), err)
	}
	tmp := fmt.Sprintf(".%s.tmp%d", name, os.Getpid())
	out, err := d.OpenFile(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, FileMode)
	if err != nil {
		return true, fmt.Errorf("keep %s as %s: %w", f.Name(), d.Name(name), unwrapPath(err))
	}
	_, err = io.Copy(out, f)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Linkat(d.Fd(), tmp, d.Fd(), name, 0)
	}
	syscall.Unlinkat(d.Fd(), tmp)
	if err != nil {
		return true, fmt.Errorf("keep %s as %s (a copy): %w", f.Name(), d.Name(name), unwrapPath(err))
	}
	return true, d.f.Sync()
}

// RemoveEmpty removes the subfolder name when it is empty; otherwise, or
// when it is not there, it does nothing.
func (d *Dir) RemoveEmpty(name string) {
	unix.Unlinkat(d.Fd(), name, unix.AT_REMOVEDIR)
}
