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

	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// dir is a folder of state files opened once: every file in it is opened
// relative to it (openat), never through a symlink, and must be a regular
// file. The enforcer's user can write state_dir (its hooks record there), so
// a link planted there must not make a root-run ceremony write elsewhere.
type dir struct {
	path string
	f    *os.File
}

// Modes of what ods-keyguard makes in state_dir: the hook, run as the
// enforcer's user, writes the spool and takes no lock; the monitoring user,
// in the same group, reads.
const (
	dirMode   = os.ModeSetgid | 0o770
	fileMode  = 0o640
	lockMode  = 0o660
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
		if err := os.Mkdir(path, 0o770); err != nil && !errors.Is(err, os.ErrExist) {
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
	return &dir{path: path, f: os.NewFile(uintptr(fd), path)}, nil
}

func (d *dir) close() error { return d.f.Close() }

func (d *dir) fd() int { return int(d.f.Fd()) }

func (d *dir) name(file string) string { return filepath.Join(d.path, file) }

// sub opens the subfolder name, made when create is set.
func (d *dir) sub(name string, create bool) (*dir, error) {
	if create {
		if err := syscall.Mkdirat(d.fd(), name, 0o770); err == nil {
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
	return &dir{path: d.name(name), f: os.NewFile(uintptr(fd), d.name(name))}, nil
}

// open opens name with flags, never through a symlink, and checks that it
// is a regular file.
func (d *dir) open(name string, flags int, mode uint32) (*os.File, error) {
	fd, err := syscall.Openat(d.fd(), name, flags|noFollow, mode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("state file %s: is a symlink; ods-keyguard does not follow links in state_dir", d.name(name))
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
		return nil, fmt.Errorf("state file %s: not a regular file (%s)", d.name(name), fi.Mode().Type())
	}
	return f, nil
}

// maxStateFile bounds what is read of one state file.
const maxStateFile = 256 << 20

// read returns the contents of name; a missing file is os.ErrNotExist.
func (d *dir) read(name string) ([]byte, error) {
	f, err := d.open(name, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", d.name(name), err)
	}
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("state file %s: larger than %d MiB", d.name(name), maxStateFile>>20)
	}
	return b, nil
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
