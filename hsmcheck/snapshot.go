package hsmcheck

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SoftHSMv2 tokens are read from a private copy of their folder, never in
// place. SoftHSMv2 2.6.1 (its file object store) writes the token from
// processes that only read it, and its writes are not safe against another
// process writing the same file:
//
//   - C_GetAttributeValue wraps the object in a P11Object whose
//     initialisation stores a default value for every attribute the
//     process's cached copy lacks; storing rewrites the whole object file
//     from that cached copy, without reading the file again first. A
//     reader that cached an object while the enforcer was still creating
//     it (a new object gets its defaults one file rewrite at a time, then
//     the template) writes the half-made copy back over the finished key:
//     CKA_ID, label and key material gone, the hsmKey row in kasp.db
//     pointing at nothing.
//   - C_Login rewrites token.object (the user PIN flags), C_Initialize the
//     token's generation file.
//   - Every rewrite truncates the file under its fcntl lock but writes the
//     new content only when the stdio stream is closed, after the unlock:
//     another process can find the file empty, take it for invalid, or
//     write into the gap.
//
// The experiment in internal/lab/bench (-race) showed all of these with the
// real enforcer generating keys (BENCHMARKS.md). A reader that works on a
// copy cannot damage the token: every file of the live token is opened
// read-only, and SoftHSMv2's own writes (login, defaults, generation) go
// to the copy, which the parent process removes with the child.

// errNoSnapshot means the SoftHSMv2 configuration does not allow a copy
// (not a regular file, not readable, not the file object store): the
// token is read in place, as SoftHSMv2 would, and its errors explain.
var errNoSnapshot = errors.New("no snapshot")

// BusyError is an object file that was being written all the while it
// was copied: the read is tried again (transient).
type BusyError struct{ Path string }

func (e *BusyError) Error() string {
	return fmt.Sprintf("SoftHSMv2 object file %s is being written (empty or cut short each time it was read)", e.Path)
}

// Snapshot limits: how often a half-written object file is read again, and
// the largest object file copied (SoftHSMv2's are a few KiB).
const (
	snapshotAttempts = 20
	snapshotBackoff  = 2 * time.Millisecond
	maxObjectFile    = 1 << 20
)

// snapshotFolder makes the folder for the copies, private to this user:
// under TMPDIR when it is set, else in memory (/dev/shm: 20,000 files cost
// 0.3 s there, seconds on a disk; BenchmarkSnapshot), else under /tmp. A
// TMPDIR this user cannot write (another user's) is passed over.
func snapshotFolder() (string, error) {
	dir, err := inCopyPlace(func(p string) (string, error) { return os.MkdirTemp(p, "ods-keyguard-read-") })
	if err != nil {
		return "", fmt.Errorf("no folder for a copy of the SoftHSMv2 tokens, which are not read in place (set TMPDIR to a folder this user may write): %w", err)
	}
	return dir, nil
}

// inCopyPlace makes a folder for copies with mk in the first place where
// it can: TMPDIR when it is set, /dev/shm, /tmp. The error is the first
// place's.
func inCopyPlace(mk func(place string) (string, error)) (string, error) {
	var places []string
	if d := os.Getenv("TMPDIR"); d != "" {
		places = append(places, d)
	}
	places = append(places, "/dev/shm", "/tmp")
	var first error
	for _, p := range places {
		dir, err := mk(p)
		if err == nil {
			return dir, nil
		}
		if first == nil {
			first = err
		}
	}
	return "", first
}

// snapshotOpener wraps open: a module that is, or may be, SoftHSMv2 is
// opened on a copy of its tokens. A module is SoftHSMv2 by its file name,
// or by what it says it is once open (C_GetInfo: a wrapper or p11-kit's
// proxy in front of SoftHSMv2); so wherever a SoftHSMv2 configuration is
// in reach ($SOFTHSM2_CONF, or its default file), the copy is made before
// C_Initialize, where SoftHSMv2 reads it, and given up once the module
// says it is something else. The copy is the kept one, brought up to date
// (snapcache.go), or, when another process holds it, a fresh one in a new
// folder under dir, removed when the module is closed. A configuration
// that allows no copy is read in place (errNoSnapshot); without dir and
// without the kept copy, such a module is not opened at all (unavailable
// says why): another module is opened as it is.
func snapshotOpener(open Opener, dir, unavailable string) Opener {
	n := 0
	return func(path string) (Module, error) {
		named := isSoftHSM(path)
		orig, set := os.LookupEnv("SOFTHSM2_CONF")
		conf := orig
		if conf == "" {
			conf = softHSMConf
		}
		if !named && !exists(conf) {
			return open(path)
		}
		snap, release, err := keptSnapshot(conf)
		if err != nil && !errors.Is(err, errNoSnapshot) {
			// The kept copy is in use or cannot be kept: a copy of this
			// run's own.
			if dir == "" {
				if unavailable == "" {
					unavailable = "no folder for a copy of the SoftHSMv2 tokens, which are not read in place"
				}
				if !named {
					unavailable = fmt.Sprintf("module %s may be SoftHSMv2 behind a wrapper (a SoftHSMv2 configuration, %s, is in reach), and %s", path, conf, unavailable)
				}
				return nil, errors.New(unavailable)
			}
			n++
			sub := filepath.Join(dir, strconv.Itoa(n))
			snap, err = snapshotSoftHSM(conf, sub)
			release = func() { os.RemoveAll(sub) }
			if err != nil {
				release()
			}
		}
		if errors.Is(err, errNoSnapshot) {
			return open(path)
		}
		if err != nil {
			return nil, err
		}
		// SoftHSMv2 reads SOFTHSM2_CONF in C_Initialize; the original is
		// put back at once, for the hints that name its files.
		os.Setenv("SOFTHSM2_CONF", snap.conf)
		m, err := open(path)
		if set {
			os.Setenv("SOFTHSM2_CONF", orig)
		} else {
			os.Unsetenv("SOFTHSM2_CONF")
		}
		if err != nil {
			release()
			return nil, err
		}
		if !named && !saysSoftHSM(m) {
			release()
			return m, nil
		}
		return snapshotModule{m, release, snap.denied}, nil
	}
}

// saysSoftHSM reports whether an open module says it is SoftHSMv2.
func saysSoftHSM(m Module) bool {
	info, err := m.Info()
	if err != nil {
		// Unknown: kept on the copy, which is safe either way.
		return true
	}
	return strings.HasPrefix(info.Manufacturer, "SoftHSM") || strings.Contains(info.Description, "SoftHSM")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// snapshotModule is a module reading a copy, let go when it is closed.
// denied are the object files of each token folder that this user could
// not read when the copy was brought up to date.
type snapshotModule struct {
	Module
	release func()
	denied  map[string][]string
}

// tokensCopy is a copy of the SoftHSMv2 tokens: the configuration that
// reads it, and the object files of each token folder (by name) that this
// user may not read, left out of it.
type tokensCopy struct {
	conf   string
	denied map[string][]string
}

func (m manifest) copyOf(conf string) tokensCopy {
	c := tokensCopy{conf: conf, denied: map[string][]string{}}
	for tok, tc := range m {
		c.denied[tok] = tc.denied
	}
	return c
}

func (m snapshotModule) Close() error {
	err := m.Module.Close()
	m.release()
	return err
}

// snapshotSoftHSM copies the tokens of the SoftHSMv2 configured by conf
// into dir and writes a configuration for the copy, whose path it returns.
// It opens every file of the live token read-only and writes nothing
// there. Folders and files this user cannot read are left out, as
// SoftHSMv2 leaves them out (softHSMHint and unreadableObjects name them,
// so that such a key is UNKNOWN, never missing); an object file that keeps
// changing without ever reading whole is a *BusyError.
func snapshotSoftHSM(conf, dir string) (tokensCopy, error) {
	copyConf, now, err := updateSnapshot(conf, dir, manifest{}, func() error { return nil })
	return now.copyOf(copyConf), err
}

// manifest is what a copy holds, by token folder: the stamp of the live
// folder when it was listed, and for each object file the stamp of the
// live file when it was read and of the copy as it was written. A copy
// whose stamp moved was written since (SoftHSMv2 writes the token it
// reads: the copy, at login and when it stores an attribute's default; a
// reader killed in the middle leaves it cut short): it is copied again,
// like a live file that changed.
type manifest map[string]*tokenCopy

type tokenCopy struct {
	// Folder is the live folder's stamp, Listed when its listing began
	// (Unix nanoseconds). A folder whose stamp has not moved since holds
	// the same names (creating, removing or renaming a file moves it), if
	// it had not moved for racyWindow before it was listed: the names of
	// Files are used, not listed again.
	Folder stamp
	Listed int64
	Files  []fileCopy
	// Skipped are the object files left out (unreadable to this user, or
	// no whole object): looked at again at every run. denied are those
	// this user may not read, this run.
	Skipped []string
	denied  []string
}

type fileCopy struct {
	Name string
	copied
}

type copied struct {
	Src, Copy stamp
}

// updateSnapshot is snapshotSoftHSM on a folder that may hold an earlier
// copy, made with old: only what changed since is read. changed is called
// before the first change to the copy's object files. The manifest
// returned is old itself when nothing at all moved.
func updateSnapshot(conf, dir string, old manifest, changed func() error) (string, manifest, error) {
	text, _, err := readRegular(conf, 1<<20)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errNoSnapshot, err)
	}
	tokendir, backend := "/var/lib/softhsm/tokens/", "file"
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(text)))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, "=")
		switch k = strings.TrimSpace(k); {
		case !ok || strings.HasPrefix(k, "#"):
		case k == "directories.tokendir":
			tokendir = strings.TrimSpace(v)
			continue
		case k == "objectstore.backend":
			backend = strings.TrimSpace(v)
		}
		lines = append(lines, line)
	}
	if backend != "file" {
		// The database object store has transactions of its own.
		return "", nil, fmt.Errorf("%w: object store %q", errNoSnapshot, backend)
	}
	entries, err := os.ReadDir(tokendir)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errNoSnapshot, err)
	}
	tokens := filepath.Join(dir, "tokens")
	if _, err := os.Lstat(tokens); err != nil {
		if err := changed(); err != nil {
			return "", nil, err
		}
		if err := os.MkdirAll(tokens, 0o700); err != nil {
			return "", nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
		}
	}
	now, moved := manifest{}, false
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		tc, err := copyTokenFolder(tokendir, tokens, e.Name(), old[e.Name()], changed)
		if err != nil {
			return "", nil, err
		}
		if tc != nil {
			now[e.Name()] = tc
		}
		moved = moved || tc != old[e.Name()]
	}
	// Token folders gone from the live store are gone from the copy.
	if have, err := os.ReadDir(tokens); err == nil {
		for _, e := range have {
			if now[e.Name()] == nil {
				if err := changed(); err != nil {
					return "", nil, err
				}
				os.RemoveAll(filepath.Join(tokens, e.Name()))
			}
		}
	}
	copyConf := filepath.Join(dir, "softhsm2.conf")
	lines = append(lines, "directories.tokendir = "+tokens+"/")
	if err := writeIfNew(copyConf, []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return "", nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	if !moved && len(now) == len(old) {
		return copyConf, old, nil
	}
	return copyConf, now, nil
}

// copyTokenFolder copies the object files of one token, the folder tok
// of the store (token.object and UUID.object), each once it reads as a
// whole object file, and returns what the copy holds: nil for a folder
// that is no token (unreadable, gone), old itself when nothing moved.
// The lock files and the generation file are SoftHSMv2's own bookkeeping:
// it makes them again in the copy. A file whose live and copied stamps
// are those old recorded is not read again. Files are looked at by
// several workers at once: at 10,000 keys, 40,000 stats are most of what
// a run that finds nothing changed costs.
func copyTokenFolder(store, copyStore, tok string, old *tokenCopy, changed func() error) (*tokenCopy, error) {
	src, dst := filepath.Join(store, tok), filepath.Join(copyStore, tok)
	gone := func() (*tokenCopy, error) {
		if _, err := os.Lstat(dst); err == nil {
			if err := changed(); err != nil {
				return nil, err
			}
			os.RemoveAll(dst)
		}
		return nil, nil
	}
	sd, err := os.Open(src)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
			// SoftHSMv2 skips a folder it cannot read (softHSMHint says
			// so), and one removed meanwhile is no token.
			return gone()
		}
		return nil, fmt.Errorf("SoftHSMv2 token folder %s: %w", src, err)
	}
	defer sd.Close()
	sfd := int(sd.Fd())
	folder, err := stampAt(sfd, ".")
	if err != nil {
		return nil, fmt.Errorf("SoftHSMv2 token folder %s: %w", src, err)
	}
	if old == nil {
		old = &tokenCopy{}
	}
	listed := old.Listed
	var names []string
	if old.Listed != 0 && folder == old.Folder && old.Listed-folder.Mtime >= int64(racyWindow) {
		names = make([]string, 0, len(old.Files)+len(old.Skipped)+1)
		for _, f := range old.Files {
			names = append(names, f.Name)
		}
		names = append(names, old.Skipped...)
		names = append(names, tokenObject)
	} else {
		listed = time.Now().UnixNano()
		entries, err := sd.ReadDir(-1)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return gone()
			}
			return nil, fmt.Errorf("SoftHSMv2 token folder %s: %w", src, err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".object") && e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	if _, err := os.Lstat(dst); err != nil {
		if err := changed(); err != nil {
			return nil, err
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			return nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
		}
	}
	dd, err := os.Open(dst)
	if err != nil {
		return nil, fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	defer dd.Close()
	dfd := int(dd.Fd())
	// Where the names were listed, old's entries are looked up by name;
	// else they are the names, in order.
	var was func(i int) (copied, bool)
	if listed == old.Listed {
		was = func(i int) (copied, bool) {
			if i < len(old.Files) {
				return old.Files[i].copied, true
			}
			return copied{}, false
		}
	} else {
		byName := make(map[string]copied, len(old.Files))
		for _, f := range old.Files {
			byName[f.Name] = f.copied
		}
		was = func(i int) (copied, bool) {
			c, ok := byName[names[i]]
			return c, ok
		}
	}
	type result struct {
		kept, same, skipped, denied bool
		c                           copied
		err                         error
	}
	results := make([]result, len(names))
	one := func(i int) result {
		name := names[i]
		w, ok := was(i)
		if ok {
			s, serr := stampAt(sfd, name)
			c, cerr := stampAt(dfd, name)
			if serr == nil && cerr == nil && s == w.Src && c == w.Copy {
				return result{kept: true, same: true, c: w}
			}
		}
		from, to := filepath.Join(src, name), filepath.Join(dst, name)
		b, st, err := readObjectFile(from)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errDeadFile) || errors.Is(err, fs.ErrPermission) {
			// Destroyed while we copied, no object for SoftHSMv2 either, or
			// one it would skip unseen as well: unreadableObjects names
			// those, on the token itself. A copy made before goes.
			if ok {
				if err := changed(); err != nil {
					return result{err: err}
				}
			}
			if ok || name == tokenObject {
				os.Remove(to)
			}
			if errors.Is(err, fs.ErrNotExist) {
				return result{}
			}
			return result{skipped: true, denied: errors.Is(err, fs.ErrPermission)}
		}
		if err == nil && name != tokenObject {
			err = changed()
		}
		if err != nil {
			return result{err: err}
		}
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			return result{err: fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)}
		}
		if err := os.Rename(to+".new", to); err != nil {
			return result{err: fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)}
		}
		if name == tokenObject {
			return result{}
		}
		c, err := stampAt(dfd, name)
		if err != nil {
			return result{err: fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)}
		}
		if time.Since(time.Unix(0, st.Mtime)) < racyWindow {
			// Written a moment ago: a second write in the same tick of
			// the file system's clock may leave the same stamp. Read
			// again next time.
			st.Mtime = -1
		}
		return result{kept: true, c: copied{Src: st, Copy: c}}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(copyWorkers, len(names)/64+1) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(names); i = int(next.Add(1)) - 1 {
				if results[i] = one(i); results[i].err != nil {
					next.Store(int64(len(names)))
				}
			}
		})
	}
	wg.Wait()
	now := &tokenCopy{Folder: folder, Listed: listed, Files: make([]fileCopy, 0, len(names))}
	same := 0
	for i, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		if r.kept {
			now.Files = append(now.Files, fileCopy{names[i], r.c})
		}
		if r.same {
			same++
		}
		if r.skipped && names[i] != tokenObject {
			now.Skipped = append(now.Skipped, names[i])
		}
		if r.denied {
			now.denied = append(now.denied, names[i])
		}
	}
	sort.Strings(now.denied)
	if same == len(old.Files) && len(now.Files) == same && now.Folder == old.Folder && now.Listed == old.Listed &&
		slices.Equal(now.Skipped, old.Skipped) {
		old.denied = now.denied
		return old, nil
	}
	// Files of the copy whose live file is gone go too.
	if listed != old.Listed {
		have := make(map[string]bool, len(names))
		for _, n := range names {
			have[n] = true
		}
		for _, f := range old.Files {
			if !have[f.Name] {
				if err := changed(); err != nil {
					return nil, err
				}
				os.Remove(filepath.Join(dst, f.Name))
			}
		}
	}
	return now, nil
}

const (
	// copyWorkers is how many files copyTokenFolder looks at at once.
	copyWorkers = 4
	// tokenObject is the file of the token itself. SoftHSMv2 rewrites it
	// at every login, so in the copy too: it is copied at every run, and
	// stays out of the manifest, which is then written only when an
	// object changed.
	tokenObject = "token.object"
	// racyWindow: a live file (or folder) modified less than this before
	// it was read (listed) is read (listed) again on the next run. File
	// systems keep modification times to a clock tick (a few
	// milliseconds), some to seconds.
	racyWindow = 2 * time.Second
)

// stampAt is the stamp of the file name in the folder open as dirfd,
// not following a link.
func stampAt(dirfd int, name string) (stamp, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return stamp{}, err
	}
	return stamp{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

// readObjectFile reads a SoftHSMv2 object file once it parses as a whole:
// a writer truncates it and writes the new content a moment later. A file
// that does not parse and has not changed for deadFile is no object, for
// SoftHSMv2 either (a writer killed in that moment leaves it so): it is
// left out (errDeadFile). One that keeps changing is a *BusyError.
func readObjectFile(path string) ([]byte, stamp, error) {
	for attempt := 0; attempt < snapshotAttempts; attempt++ {
		b, st, err := readStamped(path, maxObjectFile)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
				return nil, stamp{}, err
			}
			return nil, stamp{}, fmt.Errorf("SoftHSMv2 object file: %w", err)
		}
		if wholeObjectFile(b) {
			return b, st, nil
		}
		if time.Since(time.Unix(0, st.Mtime)) > deadFile {
			return nil, stamp{}, errDeadFile
		}
		time.Sleep(snapshotBackoff * time.Duration(1+attempt/4))
	}
	return nil, stamp{}, &BusyError{Path: path}
}

// deadFile is how long an object file that does not parse must have been
// left alone to count as no object rather than one being written.
const deadFile = time.Second

var errDeadFile = errors.New("not an object file")

// readRegular reads a regular file of at most limit bytes, without
// blocking on a FIFO, and returns its modification time.
func readRegular(path string, limit int64) ([]byte, time.Time, error) {
	b, st, err := readStamped(path, limit)
	return b, time.Unix(0, st.Mtime), err
}

// stamp is what tells a version of a file from another without reading
// it: inode, size, modification time, and the inode's change time
// (nanoseconds), which a chmod or chown moves too: a file this user may
// no longer read is not kept from when it could.
type stamp struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
}

func stampOf(fi os.FileInfo) stamp {
	st := stamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Ino = sys.Ino
		st.Ctime = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
	}
	return st
}

// readStamped is readRegular with the file's stamp as it was before the
// read: a file written after that has another stamp the next time.
func readStamped(path string, limit int64) ([]byte, stamp, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, stamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, stamp{}, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, stamp{}, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	// Read at the size the file has now, and a little over: one that grew
	// meanwhile is read to its end all the same.
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+512))
	_, err = buf.ReadFrom(io.LimitReader(f, limit+1))
	b := buf.Bytes()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, stamp{}, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, stampOf(fi), nil
}

// wholeObjectFile reports whether b is a complete SoftHSMv2 object file:
// a generation number, then attributes to the last byte, each its type,
// its kind and a value of that kind's length. Numbers are 8 bytes, big
// endian. An empty or cut-short file is one being written.
func wholeObjectFile(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	n := func(i int) (uint64, bool) {
		if i+8 > len(b) {
			return 0, false
		}
		return binary.BigEndian.Uint64(b[i:]), true
	}
	for i := 8; i < len(b); {
		kind, ok := n(i + 8)
		if !ok {
			return false
		}
		i += 16
		var size uint64
		switch kind {
		case 1: // boolean
			size = 1
		case 2: // unsigned long
			size = 8
		case 3, 4: // byte string; attribute map (its length in bytes first)
			l, ok := n(i)
			if !ok {
				return false
			}
			size = 8 + l
		case 5: // mechanism set (its count first)
			c, ok := n(i)
			if !ok || c > uint64(len(b)) {
				return false
			}
			size = 8 + 8*c
		default:
			return false
		}
		if size > uint64(len(b)-i) {
			return false
		}
		i += int(size)
	}
	return true
}
