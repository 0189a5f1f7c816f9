package hsmcheck

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
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
// reader's. A live file is read again when its inode, size, modification
// or change time moved, or when it had been modified less than racyWindow
// before it was read (a second write within the same tick of the file
// system's clock could leave all four as they were); a copied file when
// its own stamp moved (SoftHSMv2 wrote it, or a process was killed writing
// it). A token folder is listed again when its own stamp moved (a file
// made, removed or renamed), else the names of the last listing are used.
// The manifest of what the copy holds is removed before the copy's first
// change and written after the last, so a process killed in the middle
// leaves a copy that the next run makes again whole; a run that finds
// nothing changed writes nothing. A process that finds the copy locked (a
// hook while check reads) makes a fresh copy of its own, as before.
//
// What a run that finds nothing changed costs at 10,000 keys: two stats
// per object file (BenchmarkKeptSnapshot: about 75 ms in memory, where
// the first version of this file, which listed every folder and read and
// wrote a JSON manifest, took 550 ms).

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
func keptSnapshot(conf string) (snap tokensCopy, release func(), err error) {
	root, err := cacheRoot()
	if err != nil {
		return tokensCopy{}, nil, err
	}
	abs, err := filepath.Abs(conf)
	if err != nil {
		return tokensCopy{}, nil, err
	}
	text, _, err := readRegular(abs, 1<<20)
	if err != nil {
		return tokensCopy{}, nil, fmt.Errorf("%w: %v", errNoSnapshot, err)
	}
	sum := sha256.Sum256(append([]byte(abs+"\x00"), text...))
	dir := filepath.Join(root, hex.EncodeToString(sum[:12]))
	if err := privateFolder(dir); err != nil {
		return tokensCopy{}, nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return tokensCopy{}, nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return tokensCopy{}, nil, errCopyBusy
		}
		return tokensCopy{}, nil, err
	}
	release = func() { lock.Close() }
	// The configuration it copies, for sweep: a copy whose configuration
	// is gone (a test's, a moved installation's) is removed.
	if err := writeIfNew(filepath.Join(dir, "source"), []byte(abs)); err != nil {
		release()
		return tokensCopy{}, nil, err
	}
	sweep(root, dir)
	mf := filepath.Join(dir, manifestFile)
	// The manifest of an earlier format is dropped with the copy it
	// described.
	os.Remove(filepath.Join(dir, "manifest.json"))
	old, ok := readManifest(mf)
	if !ok {
		// No manifest (the first run, or one killed while it updated):
		// what the folder holds is not known, and is made anew.
		old = manifest{}
		if err := os.RemoveAll(filepath.Join(dir, "tokens")); err != nil {
			release()
			return tokensCopy{}, nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
		}
	}
	// The manifest goes before the copy is first written to, and comes
	// back once the copy is whole again. A run that finds nothing changed
	// writes nothing at all.
	var (
		once    sync.Once
		dirty   bool
		dropped error
	)
	changed := func() error {
		once.Do(func() {
			dirty = true
			if err := os.Remove(mf); err != nil && !errors.Is(err, os.ErrNotExist) {
				dropped = fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
			}
		})
		return dropped
	}
	if !ok {
		changed()
	}
	// A run allocates about as much as the manifest, once: the collector
	// would only slow it.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	copyConf, now, err := updateSnapshot(abs, dir, old, changed)
	if err == nil {
		err = dropped
	}
	if err == nil && (dirty || !now.same(old)) {
		err = os.WriteFile(mf+".new", now.encode(), 0o600)
		if err == nil {
			err = os.Rename(mf+".new", mf)
		}
		if err != nil {
			err = fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
		}
	}
	if err != nil {
		release()
		return tokensCopy{}, nil, err
	}
	return now.copyOf(copyConf), release, nil
}

// writeIfNew writes b to path unless path already holds exactly b.
func writeIfNew(path string, b []byte) error {
	if have, _, err := readRegular(path, int64(len(b))+1); err == nil && bytes.Equal(have, b) {
		return nil
	}
	return os.WriteFile(path, b, 0o600)
}

// The manifest file: a header; for each token folder its name, the
// folder's stamp, when it was listed, and the count of its files; for each
// file its name and the two stamps; the count of files skipped and their
// names; last the count of folders and of files. One that does not read whole is no manifest.
const (
	manifestFile  = "manifest"
	manifestMagic = "ods-keyguard kept copy 2\n"
)

func (m manifest) encode() []byte {
	files := 0
	for _, tc := range m {
		files += len(tc.Files)
	}
	b := make([]byte, 0, len(manifestMagic)+len(m)*80+files*(2+64+80)+16)
	b = append(b, manifestMagic...)
	putStamp := func(st stamp) {
		b = binary.LittleEndian.AppendUint64(b, st.Ino)
		b = binary.LittleEndian.AppendUint64(b, uint64(st.Size))
		b = binary.LittleEndian.AppendUint64(b, uint64(st.Mtime))
		b = binary.LittleEndian.AppendUint64(b, uint64(st.Ctime))
	}
	putString := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for tok, tc := range m {
		putString(tok)
		putStamp(tc.Folder)
		b = binary.LittleEndian.AppendUint64(b, uint64(tc.Listed))
		b = binary.AppendUvarint(b, uint64(len(tc.Files)))
		for _, f := range tc.Files {
			putString(f.Name)
			putStamp(f.Src)
			putStamp(f.Copy)
		}
		b = binary.AppendUvarint(b, uint64(len(tc.Skipped)))
		for _, name := range tc.Skipped {
			putString(name)
		}
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(m)))
	return binary.LittleEndian.AppendUint64(b, uint64(files))
}

// readManifest reads the manifest at path; false when there is none
// whole.
func readManifest(path string) (manifest, bool) {
	b, _, err := readRegular(path, 256<<20)
	if err != nil || len(b) < len(manifestMagic)+16 || string(b[:len(manifestMagic)]) != manifestMagic {
		return nil, false
	}
	wantToks := binary.LittleEndian.Uint64(b[len(b)-16:])
	wantFiles := binary.LittleEndian.Uint64(b[len(b)-8:])
	b = b[len(manifestMagic) : len(b)-16]
	short := false
	take := func(n uint64) []byte {
		if short || n > uint64(len(b)) {
			short = true
			return make([]byte, n%64)
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	uvarint := func() uint64 {
		n, w := binary.Uvarint(b)
		if w <= 0 {
			short = true
			return 0
		}
		b = b[w:]
		return n
	}
	u64 := func() uint64 {
		v := take(8)
		if short {
			return 0
		}
		return binary.LittleEndian.Uint64(v)
	}
	getStamp := func() stamp {
		return stamp{Ino: u64(), Size: int64(u64()), Mtime: int64(u64()), Ctime: int64(u64())}
	}
	m := manifest{}
	files := uint64(0)
	for len(b) > 0 && !short {
		tok := string(take(uvarint()))
		tc := &tokenCopy{Folder: getStamp(), Listed: int64(u64())}
		n := uvarint()
		if short || n > uint64(len(b))/64 {
			return nil, false
		}
		tc.Files = make([]fileCopy, 0, n)
		for range n {
			var f fileCopy
			f.Name = string(take(uvarint()))
			f.Src, f.Copy = getStamp(), getStamp()
			tc.Files = append(tc.Files, f)
		}
		n = uvarint()
		if short || n > uint64(len(b)) {
			return nil, false
		}
		for range n {
			tc.Skipped = append(tc.Skipped, string(take(uvarint())))
		}
		m[tok] = tc
		files += uint64(len(tc.Files))
	}
	if short || uint64(len(m)) != wantToks || files != wantFiles {
		return nil, false
	}
	return m, true
}

// same reports whether m holds exactly the token copies of o.
func (m manifest) same(o manifest) bool {
	if len(m) != len(o) {
		return false
	}
	for k, v := range m {
		if o[k] != v {
			return false
		}
	}
	return true
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
