package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lines the notes quote, as the enforcer writes them (ldns output).
const (
	notesLine    = "example.com. 300 IN DNSKEY 257 3 13 ViRu7YdLvtLg8ak0s6ZxOHpQUhWKUJ8rVyyiW1q2BGmUr9MM7dNXRZHHoG9Dv0o28Do9LX2yWOqPp6r8tWlnSA== \n"
	notesCKAID   = "example.com. 300 IN DNSKEY 257 3 13 grdqMGt5QtUNHTbKAJaeJzpnw0RMTKCzrLaplq4I9vcIEzuzWzXJYKnYr1kpE9O1mgDDwSsiUPk7oZOXnqpglA== ; {cka_id = e49a6f50f7e2c0e8a34b5f0f2e5d6c7b}\n"
	withTabs     = "example.com.\t300\tIN\tDNSKEY\t257 3 13 ViRu7YdLvtLg8ak0s6ZxOHpQUhWKUJ8rVyyiW1q2BGmUr9MM7dNXRZHHoG9Dv0o28Do9LX2yWOqPp6r8tWlnSA==\t\n"
	notesCKAIDID = "e49a6f50f7e2c0e8a34b5f0f2e5d6c7b"
)

func TestParseNotesLines(t *testing.T) {
	subs, err := parse(strings.NewReader(notesLine + "\n  \n" + notesCKAID + withTabs))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 3 {
		t.Fatalf("got %d submissions, want 3 (blank lines skipped)", len(subs))
	}
	a, b, c := subs[0], subs[1], subs[2]
	if a.Err != "" || a.Zone != "example.com" || a.Flags != 257 || a.Algorithm != 13 || a.CKAID != "" {
		t.Errorf("notes line: %+v", a)
	}
	if a.Line != notesLine {
		t.Errorf("line not kept byte for byte: %q", a.Line)
	}
	if b.Err != "" || b.CKAID != notesCKAIDID {
		t.Errorf("cka_id line: %+v", b)
	}
	if c.Err != "" || c.KeyTag != a.KeyTag || c.Fingerprint != a.Fingerprint {
		t.Errorf("tabs: %+v, want the same key as %+v", c, a)
	}
	if a.KeyTag == b.KeyTag || a.Fingerprint == b.Fingerprint {
		t.Error("two different keys read alike")
	}
}

// keyTag is RFC 4034 appendix B, written out here so the test does not
// check miekg/dns against itself.
func keyTag(flags, proto, alg int, pub []byte) int {
	rdata := append([]byte{byte(flags >> 8), byte(flags), byte(proto), byte(alg)}, pub...)
	var ac uint32
	for i, b := range rdata {
		if i&1 == 0 {
			ac += uint32(b) << 8
		} else {
			ac += uint32(b)
		}
	}
	ac += ac >> 16 & 0xFFFF
	return int(ac & 0xFFFF)
}

func TestParseKeyTag(t *testing.T) {
	for _, line := range []string{notesLine, notesCKAID} {
		s := ParseLine(line)
		b64 := strings.Fields(strings.SplitN(line, ";", 2)[0])[7]
		pub, _ := base64.StdEncoding.DecodeString(b64)
		if want := keyTag(257, 3, 13, pub); s.KeyTag != want {
			t.Errorf("key tag %d, want %d", s.KeyTag, want)
		}
		if sum := sha256.Sum256(pub); s.Fingerprint != hex.EncodeToString(sum[:]) {
			t.Errorf("fingerprint %s", s.Fingerprint)
		}
	}
}

func TestParseGarbage(t *testing.T) {
	for _, in := range []string{
		"hello world\n",
		"example.com. 300 IN DS 12345 13 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE\n",
		"example.com. 300 IN DNSKEY 257 3 13\n",
		"example.com. 300 IN DNSKEY 257 3 13 !!!notbase64\n",
		"example.com. 300 IN DNSKEY 257 3 13 ( AAAA\n",
		"$INCLUDE /etc/passwd\n",
		"  $INCLUDE /etc/opendnssec/site-b.pin\n",
		"$ORIGIN example.com.\n",
		"$TTL 60\n",
		"example.com. 300 IN DNSKEY 257 3 13 AAAA\x00\x01\n",
		"example.com. 300 IN DNSKEY 257 3 13 " + strings.Repeat("A", MaxLine) + "\n",
	} {
		s := ParseLine(in)
		if s.Err == "" {
			t.Errorf("%q: accepted as %+v", in, s)
		}
	}
	subs, err := parse(strings.NewReader(""))
	if err != nil || len(subs) != 0 {
		t.Errorf("empty input: %v %v", subs, err)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, seed := range []string{notesLine, notesCKAID, withTabs, "", "\n", "garbage", "x. 1 IN DNSKEY 256 3 8 AwEAAQ=="} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		s := ParseLine(line)
		if s.Line != line {
			t.Fatalf("line changed: %q -> %q", line, s.Line)
		}
		if s.Err == "" && (s.Fingerprint == "" || s.KeyTag < 0 || s.KeyTag > 65535) {
			t.Fatalf("accepted without a key: %+v", s)
		}
		if s.Err == "" {
			again := ParseLine(line)
			if again.Fingerprint != s.Fingerprint || again.KeyTag != s.KeyTag || again.Zone != s.Zone || again.Err != s.Err {
				t.Fatalf("not deterministic: %+v vs %+v", s, again)
			}
		}
	})
}

// A directive on stdin is refused without reading the file it names: the
// file's content (a PIN) must not reach an error, a log or a record.
func TestIncludeNotRead(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "site-b.pin")
	if err := os.WriteFile(pin, []byte("s3cr3t-PIN-9917\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	subs, err := parse(strings.NewReader("$INCLUDE " + pin + "\nexample.com. 300 IN DNSKEY 257 3 13 $INCLUDE " + pin + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.Err == "" || strings.Contains(s.Err, "9917") || strings.Contains(s.Describe(), "9917") {
			t.Errorf("got %+v", s)
		}
	}
}

// A megabyte of binary is a few unusable lines, never thousands of entries.
func TestBinaryInput(t *testing.T) {
	b := make([]byte, 2*MaxInput)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	subs, err := parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.Err == "" {
			t.Fatalf("accepted %q", s.Line[:20])
		}
	}
	if last := subs[len(subs)-1]; !strings.Contains(last.Err, "more than") {
		t.Errorf("the rest past MaxInput: %q", last.Err)
	}
}

// A writer that never closes stdin cannot hold the hook past its deadline.
func TestParseWithinDeadline(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := parseWithin(ctx, r)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stdin was not closed in time") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("parseWithin did not return at its deadline")
	}
}
