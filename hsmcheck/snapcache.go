package hsmcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// The copy of the SoftHSMv2 tokens is kept between runs and brought up to
// date, so that a run copies what changed since the last one rather than
// every object file: at 10,000 keys a whole copy costs 0.34 s in memory
// and seconds on a disk, on every hook run and every check.
//
// The same safety argument as a fresh copy (snapshot.go): every live file
// is opened read-only, and whatever SoftHSMv2 writes goes to the copy. The
// copy is used by one process at a time (an exclusive lock, held while the
// module is open): SoftHSMv2's in-place writes to it cannot race another
// reader's. A live file is read again when its inode, size or modification
// time moved; a copied file when its own moved (SoftHSMv2 wrote it, or a
// process was killed writing it). The manifest of what the copy holds is
// removed before an update and written after it, so a process killed in
// the middle leaves a copy that the next run makes again whole. A process
// that finds the copy locked (a hook while check reads) makes a fresh copy
// of its own, as before.

// cacheRoot is this user's folder of kept copies, private to it: under
// TMPDIR when it is set, else in memory (/dev/shm), else /tmp. It must be
// a folder of this user's, open to no one else, never a link: another
// user could otherwise plant a copy for us to read.
func cacheRoot() (string, error) {
	return inCopyPlace(func(p string) (string, error) {
		root := filepath.Join(p, "ods-keyguard-copies-"+strconv.Itoa(os.Geteuid()))
		return root, privateFolder(root)
	})
}

// privateFolder makes path (0700) or checks that it is this user's own
// folder, open to no one else.
func privateFolder(path string) error {
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s: not a folder", path)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s: not this user's", path)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s: open to others (%v)", path, fi.Mode().Perm())
	}
	return nil
}

// errCopyBusy: another process holds the kept copy.
var errCopyBusy = errors.New("the kept copy is in use")

// keptSnapshot brings the kept copy of the tokens conf configures up to
// date, locked for this process until release, and returns the
// configuration that reads it.
func keptSnapshot(conf string) (copyConf string, release func(), err error) {
	root, err := cacheRoot()
	if err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(conf)
	if err != nil {
		return "", nil, err
	}
	text, _, err := readRegular(abs, 1<<20)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errNoSnapshot, err)
	}
	sum := sha256.Sum256(append([]byte(abs+"\x00"), text...))
	dir := filepath.Join(root, hex.EncodeToString(sum[:12]))
	if err := privateFolder(dir); err != nil {
		return "", nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return "", nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return "", nil, errCopyBusy
		}
		return "", nil, err
	}
	release = func() { lock.Close() }
	// The configuration it copies, for sweep: a copy whose configuration
	// is gone (a test's, a moved installation's) is removed.
	if err := os.WriteFile(filepath.Join(dir, "source"), []byte(abs), 0o600); err != nil {
		release()
		return "", nil, err
	}
	sweep(root, dir)
	mf := filepath.Join(dir, "manifest.json")
	old := manifest{}
	if b, _, err := readRegular(mf, 64<<20); err != nil || json.Unmarshal(b, &old) != nil {
		// No manifest (the first run, or one killed while it updated):
		// what the folder holds is not known, and is made anew.
		old = manifest{}
		os.RemoveAll(filepath.Join(dir, "tokens"))
	}
	if err := os.Remove(mf); err != nil && !errors.Is(err, os.ErrNotExist) {
		release()
		return "", nil, err
	}
	copyConf, now, err := updateSnapshot(abs, dir, old)
	if err != nil {
		release()
		return "", nil, err
	}
	b, err := json.Marshal(now)
	if err == nil {
		err = os.WriteFile(mf+".new", b, 0o600)
	}
	if err == nil {
		err = os.Rename(mf+".new", mf)
	}
	if err != nil {
		release()
		return "", nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	return copyConf, release, nil
}

// sweep removes the kept copies under root, but keep, whose SoftHSMv2
// configuration is gone and that no process holds.
func sweep(root, keep string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if dir == keep || !e.IsDir() {
			continue
		}
		src, _, err := readRegular(filepath.Join(dir, "source"), 4096)
		if err != nil || exists(string(src)) {
			continue
		}
		lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(dir)
		}
		lock.Close()
	}
}
