package hsmcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/p11quirks"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// needSoftHSM returns the SoftHSMv2 backend, or skips (fails under CI).
func needSoftHSM(t *testing.T) softhsmBackend {
	t.Helper()
	for _, b := range backends(t) {
		if s, ok := b.(softhsmBackend); ok {
			return s
		}
	}
	sandbox.Missing(t, "needs SoftHSMv2")
	return softhsmBackend{}
}

// objectRecord is one attribute of a SoftHSMv2 object file: its type and
// where it lies in the file.
type objectRecord struct {
	typ        uint64
	start, end int
	value      []byte
}

// records splits a whole object file into its attributes (the test's own
// reading of the format, for making files SoftHSMv2 would rewrite).
func records(t *testing.T, b []byte) []objectRecord {
	t.Helper()
	var out []objectRecord
	for i := 8; i < len(b); {
		typ, kind := binary.BigEndian.Uint64(b[i:]), binary.BigEndian.Uint64(b[i+8:])
		j := i + 16
		var v []byte
		switch kind {
		case 1:
			v, j = b[j:j+1], j+1
		case 2:
			v, j = b[j:j+8], j+8
		case 3, 4:
			l := int(binary.BigEndian.Uint64(b[j:]))
			v, j = b[j+8:j+8+l], j+8+l
		case 5:
			c := int(binary.BigEndian.Uint64(b[j:]))
			j += 8 + 8*c
		default:
			t.Fatalf("kind %d at %d", kind, i)
		}
		out = append(out, objectRecord{typ, i, j, v})
		i = j
	}
	return out
}

// tokenFolder is the one token folder of a SoftHSMv2 configured by conf.
func tokenFolder(t *testing.T, conf string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), "tokens", "*"))
	if len(dirs) != 1 {
		t.Fatalf("token folders: %v", dirs)
	}
	return dirs[0]
}

// folderState is every file of a folder: name, size, modification time
// and content hash.
func folderState(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		must(t, err)
		b, err := os.ReadFile(p)
		must(t, err)
		sum := sha256.Sum256(b)
		out = append(out, fmt.Sprintf("%s %d %s %x", e.Name(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano), sum[:8]))
	}
	sort.Strings(out)
	return out
}

// Reading a SoftHSMv2 token writes nothing into its folder. SoftHSMv2
// 2.6.1 read in place rewrites token.object at login, the generation file
// at initialisation, and an object file whose attributes lack one it
// gives a default to (as an object being created does, at the moment
// another process caches it): that last write put a half-made copy over a
// key the enforcer had just finished, in the experiment of BENCHMARKS.md.
// Here the public key lacks CKA_COPYABLE, as a reader's stale copy would.
// SoftHSMv2 behind a wrapper (the lab's quirks module, without knobs, as
// p11-kit's proxy would be) is known by what it says it is, and read from
// a copy all the same.
func TestReadingLeavesTheTokenAlone(t *testing.T) {
	t.Run("SoftHSMv2", func(t *testing.T) { readingLeavesTheTokenAlone(t, false) })
	t.Run("SoftHSMv2 behind a wrapper", func(t *testing.T) { readingLeavesTheTokenAlone(t, true) })
}

func readingLeavesTheTokenAlone(t *testing.T, wrapped bool) {
	b := needSoftHSM(t)
	so := ""
	if wrapped {
		sandbox.NeedTools(t, "gcc")
		var err error
		so, err = p11quirks.Build()
		must(t, err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the reader makes its copy
	toks, pubs := b.make(t, tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}, {ID: rsaID, Type: "RSA", Bits: 1024}}})
	dir := tokenFolder(t, toks[0].Env["SOFTHSM2_CONF"])
	if wrapped {
		toks[0].Env["P11QUIRKS_MODULE"] = toks[0].Module
		toks[0].Module = so
	}

	stripped := false
	files, _ := filepath.Glob(filepath.Join(dir, "*.object"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		must(t, err)
		rs := records(t, data)
		public, id := false, ""
		for _, r := range rs {
			if r.typ == 0 && bytes.Equal(r.value, []byte{0, 0, 0, 0, 0, 0, 0, 2}) {
				public = true
			}
			if r.typ == 0x102 {
				id = hex.EncodeToString(r.value)
			}
		}
		if !public || id != ecID {
			continue
		}
		for _, r := range rs {
			if r.typ == 0x171 { // CKA_COPYABLE
				must(t, os.WriteFile(f, append(data[:r.start:r.start], data[r.end:]...), 0o600))
				stripped = true
			}
		}
	}
	if !stripped {
		t.Fatal("no public key object with CKA_COPYABLE")
	}
	before := folderState(t, dir)

	res := reader(t).Read(context.Background(), toks, Request{})[0]
	must(t, res.Err)
	ec, n := res.Contents.Find(ecID)
	if n != 1 || ec.Fingerprint != FingerprintDNSKEY(pubs[ecID]) || len(res.Contents.Keys) != 2 {
		t.Fatalf("read %+v", res.Contents.Keys)
	}
	if after := folderState(t, dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the token folder changed:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	// The kept copy stays, this user's alone; no other folder does.
	left, _ := os.ReadDir(tmp)
	if len(left) != 1 || left[0].Name() != fmt.Sprintf("ods-keyguard-copies-%d", os.Geteuid()) {
		t.Errorf("left behind: %v", left)
	}
	if fi, err := os.Stat(filepath.Join(tmp, left[0].Name())); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the kept copy's folder: %v %v", fi.Mode(), err)
	}
	// A second read updates the kept copy: the same answer, and still no
	// write to the token.
	res = reader(t).Read(context.Background(), toks, Request{})[0]
	must(t, res.Err)
	if ec, n := res.Contents.Find(ecID); n != 1 || ec.Fingerprint != FingerprintDNSKEY(pubs[ecID]) || len(res.Contents.Keys) != 2 {
		t.Fatalf("read again %+v", res.Contents.Keys)
	}
	if after := folderState(t, dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the token folder changed on the second read")
	}
}

// The kept copy follows the token: a key added, a key deleted, an object
// file that the reader's SoftHSMv2 rewrote in the copy, a manifest lost.
func TestKeptCopyFollowsTheToken(t *testing.T) {
	b := needSoftHSM(t)
	t.Setenv("TMPDIR", t.TempDir())
	toks, _ := b.make(t, tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}}})
	conf := toks[0].Env["SOFTHSM2_CONF"]
	read := func() []string {
		t.Helper()
		res := reader(t).Read(context.Background(), toks, Request{NoPublic: true})[0]
		must(t, res.Err)
		var ids []string
		for _, k := range res.Contents.Keys {
			ids = append(ids, k.ID)
		}
		return ids
	}
	if got := read(); strings.Join(got, " ") != ecID {
		t.Fatalf("first read: %v", got)
	}
	must(t, sandbox.PKCS11Tool(conf, "ods-a", "1234", "--keypairgen", "--key-type", "EC:prime256v1", "--id", "ab", "--label", "ab"))
	if got := read(); strings.Join(got, " ") != ecID+" ab" {
		t.Fatalf("after a key was added: %v", got)
	}
	// The copy's own files cut short, as by a reader killed while
	// SoftHSMv2 rewrote them: made again from the token.
	copies, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "ods-keyguard-copies-*", "*", "tokens", "*", "*.object"))
	if len(copies) == 0 {
		t.Fatal("no kept copy")
	}
	for _, c := range copies {
		must(t, os.WriteFile(c, nil, 0o600))
	}
	if got := read(); strings.Join(got, " ") != ecID+" ab" {
		t.Fatalf("after the copy was cut short: %v", got)
	}
	must(t, sandbox.PKCS11Tool(conf, "ods-a", "1234", "--delete-object", "--type", "privkey", "--id", "ab"))
	manifests, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "ods-keyguard-copies-*", "*", manifestFile))
	for _, m := range manifests {
		must(t, os.Remove(m))
	}
	if got := read(); strings.Join(got, " ") != ecID {
		t.Fatalf("after a key was deleted and the manifest lost: %v", got)
	}
	// A kept copy whose configuration is gone is swept by the next read.
	other, err := sandbox.SoftHSM(filepath.Join(t.TempDir(), "other"))
	must(t, err)
	_, release, err := keptSnapshot(other)
	must(t, err)
	release()
	must(t, os.RemoveAll(filepath.Dir(other)))
	read()
	if kept, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "ods-keyguard-copies-*", "*", "source")); len(kept) != 1 {
		t.Errorf("kept copies after the sweep: %v", kept)
	}
}

// A run that finds nothing changed writes nothing and lists no folder that
// has not changed; a file rewritten in place is copied again; a file made
// a moment before it was copied is read again next time (a second write
// in the same clock tick could leave its stamp as it was); a file left
// out is looked at again at every run.
func TestKeptCopyUpdates(t *testing.T) {
	b := needSoftHSM(t)
	t.Setenv("TMPDIR", t.TempDir())
	toks, _ := b.make(t, tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}}})
	conf := toks[0].Env["SOFTHSM2_CONF"]
	dir := tokenFolder(t, conf)
	tok := filepath.Base(dir)
	update := func() (tokensCopy, manifest) {
		t.Helper()
		snap, release, err := keptSnapshot(conf)
		must(t, err)
		release()
		m, ok := readManifest(filepath.Join(filepath.Dir(snap.conf), manifestFile))
		if !ok || m[tok] == nil {
			t.Fatalf("no manifest of %s: %v", tok, m)
		}
		return snap, m
	}
	age := func(paths ...string) {
		hour := time.Now().Add(-time.Hour)
		for _, p := range paths {
			must(t, os.Chtimes(p, hour, hour))
		}
	}
	// rewrite writes b over path in place, as SoftHSMv2 does, and makes
	// it an hour old: the folder's stamp does not move.
	rewrite := func(path string, b []byte) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteAt(b, 0)
		must(t, err)
		must(t, f.Close())
		age(path)
	}
	_, m := update()
	for _, f := range m[tok].Files {
		if f.Src.Mtime != -1 {
			t.Errorf("%s, made a moment ago: stamp %+v kept, not read again", f.Name, f.Src)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.object"))
	age(append(files, dir)...)
	update()
	snap, m := update()
	listed := m[tok].Listed
	for _, f := range m[tok].Files {
		if f.Src.Mtime == -1 {
			t.Errorf("%s, an hour old: read again at every run", f.Name)
		}
	}
	mf := filepath.Join(filepath.Dir(snap.conf), manifestFile)
	before, err := os.Stat(mf)
	must(t, err)
	_, m = update()
	if m[tok].Listed != listed {
		t.Errorf("the folder, unchanged, was listed again")
	}
	if after, err := os.Stat(mf); err != nil || !os.SameFile(before, after) || after.ModTime() != before.ModTime() {
		t.Errorf("the manifest was written again with nothing changed")
	}
	// An object file rewritten in place, to the same size: copied again,
	// and the folder still not listed.
	var key string
	for _, f := range files {
		if filepath.Base(f) != tokenObject {
			key = f
			break
		}
	}
	data, err := os.ReadFile(key)
	must(t, err)
	// One byte of the label changed (encrypted in a private object, a
	// byte string all the same).
	changed := append([]byte(nil), data...)
	for _, r := range records(t, data) {
		if r.typ == 0x3 && len(r.value) > 0 {
			changed[r.end-1] ^= 1
			break
		}
	}
	if bytes.Equal(changed, data) || !wholeObjectFile(changed) {
		t.Fatal("no label to change")
	}
	rewrite(key, changed)
	snap, m = update()
	got, err := os.ReadFile(filepath.Join(filepath.Dir(snap.conf), "tokens", tok, filepath.Base(key)))
	must(t, err)
	if !bytes.Equal(got, changed) {
		t.Errorf("the file rewritten in place was not copied again")
	}
	if m[tok].Listed != listed {
		t.Errorf("the folder, unchanged, was listed again after a file changed")
	}
	// A file that is no object is left out, and looked at again once it
	// is one (rewritten in place: the folder's stamp does not move).
	dead := filepath.Join(dir, "0badf11e-0000-0000-0000-000000000000.object")
	must(t, os.WriteFile(dead, []byte("x"), 0o600))
	age(dead, dir)
	update()
	_, m = update()
	if len(m[tok].Skipped) != 1 || m[tok].Skipped[0] != filepath.Base(dead) {
		t.Fatalf("skipped %v", m[tok].Skipped)
	}
	listed = m[tok].Listed
	rewrite(dead, data)
	snap, m = update()
	if m[tok].Listed != listed || len(m[tok].Skipped) != 0 {
		t.Errorf("listed again %v, skipped %v", m[tok].Listed != listed, m[tok].Skipped)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(snap.conf), "tokens", tok, filepath.Base(dead))); err != nil {
		t.Errorf("the file that became an object: %v", err)
	}
}

// The manifest reads back as written; cut short anywhere, or with a byte
// changed in its counts, it is no manifest (the copy is made anew).
func TestManifestFile(t *testing.T) {
	st := stamp{Ino: 7, Size: 1234, Mtime: -1, Ctime: 1796700000123456789}
	m := manifest{
		"0e6a2b3c-0000-0000-0000-000000000001": {Folder: st, Listed: 42, Files: []fileCopy{
			{"a.object", copied{st, stamp{Ino: 8}}}, {"b.object", copied{stamp{}, st}}}, Skipped: []string{"c.object"}},
		"0e6a2b3c-0000-0000-0000-000000000002": {Listed: 43},
	}
	b := m.encode()
	p := filepath.Join(t.TempDir(), manifestFile)
	must(t, os.WriteFile(p, b, 0o600))
	got, ok := readManifest(p)
	if !ok || len(got) != len(m) {
		t.Fatalf("read back %v %+v", ok, got)
	}
	for tok, tc := range m {
		if g, w := fmt.Sprintf("%+v", got[tok]), fmt.Sprintf("%+v", tc); g != w {
			t.Errorf("%s: read back %s, want %s", tok, g, w)
		}
	}
	for cut := 0; cut < len(b); cut++ {
		must(t, os.WriteFile(p, b[:cut], 0o600))
		if _, ok := readManifest(p); ok {
			t.Fatalf("cut at %d of %d: taken for a manifest", cut, len(b))
		}
	}
	for _, at := range []int{len(b) - 1, len(b) - 9} {
		bad := append([]byte(nil), b...)
		bad[at]++
		must(t, os.WriteFile(p, bad, 0o600))
		if _, ok := readManifest(p); ok {
			t.Errorf("count at %d changed: taken for a manifest", at)
		}
	}
}

// An object file that does not parse: left out when nobody has touched it
// for a while (SoftHSMv2 takes it for no object too), asked again while it
// is being written.
func TestSnapshotHalfWrittenFiles(t *testing.T) {
	b := needSoftHSM(t)
	toks, _ := b.make(t, tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}}})
	conf := toks[0].Env["SOFTHSM2_CONF"]
	dir := tokenFolder(t, conf)

	dead := filepath.Join(dir, "0badf11e-0000-0000-0000-000000000000.object")
	must(t, os.WriteFile(dead, nil, 0o600))
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(dead, old, old))
	snap, err := snapshotSoftHSM(conf, filepath.Join(t.TempDir(), "copy"))
	must(t, err)
	copyConf := snap.conf
	copied, _ := filepath.Glob(filepath.Join(filepath.Dir(copyConf), "tokens", "*", "*.object"))
	live, _ := filepath.Glob(filepath.Join(dir, "*.object"))
	if len(copied) != len(live)-1 {
		t.Errorf("copied %d object files of %d, the dead one left out: %v", len(copied), len(live), copied)
	}
	res := reader(t).Read(context.Background(), toks, Request{})[0]
	if res.Err != nil || len(res.Contents.Keys) != 1 {
		t.Fatalf("with a dead object file: %+v %v", res.Contents, res.Err)
	}

	// A modification time ahead of now: still being written, whatever
	// the machine's load.
	future := time.Now().Add(time.Hour)
	must(t, os.Chtimes(dead, future, future))
	_, _, err = readObjectFile(dead)
	var busy *BusyError
	if !errors.As(err, &busy) || !transient(err) || err.Error() != "SoftHSMv2 object file "+dead+" is being written (empty or cut short each time it was read)" {
		t.Fatalf("got %v", err)
	}
}

func TestWholeObjectFile(t *testing.T) {
	b := needSoftHSM(t)
	toks, _ := b.make(t, tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}, {ID: rsaID, Type: "RSA", Bits: 1024}}})
	files, _ := filepath.Glob(filepath.Join(tokenFolder(t, toks[0].Env["SOFTHSM2_CONF"]), "*.object"))
	if len(files) != 5 { // token.object and two key pairs
		t.Fatalf("object files: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		must(t, err)
		if !wholeObjectFile(data) {
			t.Errorf("%s: a whole file taken for a half-written one", f)
		}
		rs := records(t, data)
		last := rs[len(rs)-1]
		for _, cut := range []int{0, 7, last.start + 3, last.start + 16, len(data) - 1} {
			if wholeObjectFile(data[:cut]) {
				t.Errorf("%s cut at %d of %d: taken for a whole file", f, cut, len(data))
			}
		}
		bad := append(append([]byte(nil), data...), make([]byte, 16)...)
		binary.BigEndian.PutUint64(bad[len(data)+8:], 9) // no such kind
		if wholeObjectFile(bad) {
			t.Errorf("%s: an attribute of an unknown kind accepted", f)
		}
	}
}

// Without a folder for a copy, its kept copy in use by another process, a
// SoftHSMv2 token is not read at all: read in place it could destroy the
// key being generated. Nor is another module where a SoftHSMv2
// configuration is in reach (it may be SoftHSMv2 behind a wrapper);
// without one, another module is opened as it is.
func TestNoSnapshotFolder(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	conf, err := sandbox.SoftHSM(filepath.Join(t.TempDir(), "softhsm"))
	must(t, err)
	t.Setenv("SOFTHSM2_CONF", conf)
	_, release, err := keptSnapshot(conf)
	must(t, err)
	defer release()
	opened := ""
	open := func(path string) (Module, error) { opened = path; return nil, errors.New("opened") }
	o := snapshotOpener(open, "", "no folder for a copy")
	if _, err := o(softhsmModule); err == nil || err.Error() != "no folder for a copy" || opened != "" {
		t.Errorf("SoftHSMv2: %v, opened %q", err, opened)
	}
	other := "/usr/lib/x86_64-linux-gnu/libcs_pkcs11_R3.so"
	if _, err := o(other); err == nil || err.Error() != "module "+other+" may be SoftHSMv2 behind a wrapper (a SoftHSMv2 configuration, "+conf+", is in reach), and no folder for a copy" || opened != "" {
		t.Errorf("another module, SoftHSMv2 in reach: %v, opened %q", err, opened)
	}
	t.Setenv("SOFTHSM2_CONF", filepath.Join(t.TempDir(), "none.conf"))
	if _, err := o(other); err == nil || err.Error() != "opened" {
		t.Errorf("another module: %v", err)
	}
}

// BenchmarkSnapshot copies a token folder of 20,002 object files, as
// SoftHSMv2 keeps 10,000 key pairs: the price of reading from a copy. It
// copies under TMPDIR: set it to the folder to measure (/dev/shm, where
// the reader copies unless TMPDIR is set). The object files are copies of
// one key pair's; the copy does not care.
func BenchmarkSnapshot(b *testing.B) {
	conf := bigToken(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), "copy")
		if _, err := snapshotSoftHSM(conf, dir); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

// BenchmarkKeptSnapshot brings the kept copy of the same token folder up
// to date when nothing changed: what a run pays with the kept copy.
func BenchmarkKeptSnapshot(b *testing.B) {
	conf := bigToken(b)
	b.Setenv("TMPDIR", b.TempDir())
	_, release, err := keptSnapshot(conf)
	if err != nil {
		b.Fatal(err)
	}
	release()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, release, err := keptSnapshot(conf)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

// bigToken makes a token folder of 20,002 object files, as SoftHSMv2 keeps
// 10,000 key pairs, and returns its configuration.
func bigToken(b *testing.B) string {
	if _, err := os.Stat(softhsmModule); err != nil {
		sandbox.Missing(b, "needs SoftHSMv2 (%v)", err)
	}
	base := b.TempDir()
	conf := filepath.Join(base, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(base, "tokens"), 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+base+"/tokens/\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, argv := range [][]string{
		{"softhsm2-util", "--init-token", "--free", "--label", "ods-a", "--pin", "1234", "--so-pin", "5678"},
		{"pkcs11-tool", "--module", softhsmModule, "--token-label", "ods-a", "--pin", "1234", "--keypairgen", "--key-type", "EC:prime256v1", "--id", ecID},
	} {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", argv[0], err, out)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), "tokens", "*"))
	files, _ := filepath.Glob(filepath.Join(dirs[0], "*.object"))
	var keys [][]byte
	for _, f := range files {
		if filepath.Base(f) != "token.object" {
			data, _ := os.ReadFile(f)
			keys = append(keys, data)
		}
	}
	for i := 0; i < 10000; i++ {
		for j, data := range keys {
			name := fmt.Sprintf("%08x-0000-0000-0000-%012x.object", i, j)
			if err := os.WriteFile(filepath.Join(dirs[0], name), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Made an hour ago, as a token's keys mostly are: not read again for
	// having changed a moment before they were copied (racyWindow).
	hour := time.Now().Add(-time.Hour)
	files, _ = filepath.Glob(filepath.Join(dirs[0], "*"))
	for _, f := range append(files, dirs[0]) {
		if err := os.Chtimes(f, hour, hour); err != nil {
			b.Fatal(err)
		}
	}
	return conf
}
