package hsmcheck

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	var places []string
	if d := os.Getenv("TMPDIR"); d != "" {
		places = append(places, d)
	}
	places = append(places, "/dev/shm", "/tmp")
	var first error
	for _, p := range places {
		dir, err := os.MkdirTemp(p, "ods-keyguard-read-")
		if err == nil {
			return dir, nil
		}
		if first == nil {
			first = err
		}
	}
	return "", fmt.Errorf("no folder for a copy of the SoftHSMv2 tokens, which are not read in place (set TMPDIR to a folder this user may write): %w", first)
}

// snapshotOpener wraps open: a SoftHSMv2 module is opened on a fresh copy
// of its tokens, made in a new folder under dir, which the module's Close
// removes. Every open makes a new copy, so a read that is tried again
// sees the token as it is then. A configuration that allows no copy is
// read in place; without dir, a SoftHSMv2 module is not opened at all
// (unavailable says why): another module is opened as it is.
func snapshotOpener(open Opener, dir, unavailable string) Opener {
	n := 0
	return func(path string) (Module, error) {
		if !isSoftHSM(path) {
			return open(path)
		}
		if dir == "" {
			if unavailable == "" {
				unavailable = "no folder for a copy of the SoftHSMv2 tokens, which are not read in place"
			}
			return nil, errors.New(unavailable)
		}
		orig, set := os.LookupEnv("SOFTHSM2_CONF")
		conf := orig
		if conf == "" {
			conf = softHSMConf
		}
		n++
		sub := filepath.Join(dir, strconv.Itoa(n))
		copyConf, err := snapshotSoftHSM(conf, sub)
		if errors.Is(err, errNoSnapshot) {
			os.RemoveAll(sub)
			return open(path)
		}
		if err != nil {
			os.RemoveAll(sub)
			return nil, err
		}
		// SoftHSMv2 reads SOFTHSM2_CONF in C_Initialize; the original is
		// put back at once, for the hints that name its files.
		os.Setenv("SOFTHSM2_CONF", copyConf)
		m, err := open(path)
		if set {
			os.Setenv("SOFTHSM2_CONF", orig)
		} else {
			os.Unsetenv("SOFTHSM2_CONF")
		}
		if err != nil {
			os.RemoveAll(sub)
			return nil, err
		}
		return snapshotModule{m, sub}, nil
	}
}

// snapshotModule is a module reading a copy, removed when it is closed.
type snapshotModule struct {
	Module
	dir string
}

func (m snapshotModule) Close() error {
	err := m.Module.Close()
	os.RemoveAll(m.dir)
	return err
}

// snapshotSoftHSM copies the tokens of the SoftHSMv2 configured by conf
// into dir and writes a configuration for the copy, whose path it returns.
// It opens every file of the live token read-only and writes nothing
// there. Folders and files this user cannot read are left out, as
// SoftHSMv2 leaves them out (softHSMHint and unreadableObjects name them,
// so that such a key is UNKNOWN, never missing); an object file that keeps
// changing without ever reading whole is a *BusyError.
func snapshotSoftHSM(conf, dir string) (string, error) {
	text, _, err := readRegular(conf, 1<<20)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoSnapshot, err)
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
		return "", fmt.Errorf("%w: object store %q", errNoSnapshot, backend)
	}
	entries, err := os.ReadDir(tokendir)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoSnapshot, err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := copyTokenFolder(filepath.Join(tokendir, e.Name()), filepath.Join(tokens, e.Name())); err != nil {
			return "", err
		}
	}
	copyConf := filepath.Join(dir, "softhsm2.conf")
	lines = append(lines, "directories.tokendir = "+tokens+"/")
	if err := os.WriteFile(copyConf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	return copyConf, nil
}

// copyTokenFolder copies one token's object files (token.object and
// UUID.object), each once it reads as a whole object file. The lock files
// and the generation file are SoftHSMv2's own bookkeeping: it makes them
// again in the copy.
func copyTokenFolder(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
			// SoftHSMv2 skips a folder it cannot read (softHSMHint says
			// so), and one removed meanwhile is no token.
			return nil
		}
		return fmt.Errorf("SoftHSMv2 token folder %s: %w", src, err)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".object") || !e.Type().IsRegular() {
			continue
		}
		b, err := readObjectFile(filepath.Join(src, name))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errDeadFile) || errors.Is(err, fs.ErrPermission) {
			// Destroyed while we copied, no object for SoftHSMv2 either, or
			// one it would skip unseen as well: unreadableObjects names
			// those, on the token itself.
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			return fmt.Errorf("copy of the SoftHSMv2 tokens: %w", err)
		}
	}
	return nil
}

// readObjectFile reads a SoftHSMv2 object file once it parses as a whole:
// a writer truncates it and writes the new content a moment later. A file
// that does not parse and has not changed for deadFile is no object, for
// SoftHSMv2 either (a writer killed in that moment leaves it so): it is
// left out (errDeadFile). One that keeps changing is a *BusyError.
func readObjectFile(path string) ([]byte, error) {
	for attempt := 0; attempt < snapshotAttempts; attempt++ {
		b, mtime, err := readRegular(path, maxObjectFile)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			return nil, fmt.Errorf("SoftHSMv2 object file: %w", err)
		}
		if wholeObjectFile(b) {
			return b, nil
		}
		if time.Since(mtime) > deadFile {
			return nil, errDeadFile
		}
		time.Sleep(snapshotBackoff * time.Duration(1+attempt/4))
	}
	return nil, &BusyError{Path: path}
}

// deadFile is how long an object file that does not parse must have been
// left alone to count as no object rather than one being written.
const deadFile = time.Second

var errDeadFile = errors.New("not an object file")

// readRegular reads a regular file of at most limit bytes, without
// blocking on a FIFO, and returns its modification time.
func readRegular(path string, limit int64) ([]byte, time.Time, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, time.Time{}, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, time.Time{}, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, fi.ModTime(), nil
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
