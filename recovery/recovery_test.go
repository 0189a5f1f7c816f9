package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

func TestSerialTime(t *testing.T) {
	now := time.Now().Unix()
	for _, d := range []int64{0, 3 * 86400, -86400, 60 * 86400} {
		want := now + d
		if got := serialTime(uint32(want)); got.Unix() != want {
			t.Errorf("%+d s: got %v, want %v", d, got.Unix(), want)
		}
	}
}

func TestReadSignedZone(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "z")
	os.WriteFile(p, []byte(`$ORIGIN example.com.
@ 60 IN SOA ns1 hostmaster 1 60 60 600 60
@ 60 IN RRSIG SOA 13 2 60 20301231000000 20260101000000 12345 example.com. AAAA
www 60 IN A 192.0.2.1
www 60 IN RRSIG A 13 3 60 20301201000000 20260101000000 12345 example.com. AAAA
`), 0o644)
	s, err := ReadSignedZone(p, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 2 || s.Owner != "www.example.com." || s.Type != "A" || s.Earliest.Format("2006-01-02") != "2030-12-01" {
		t.Errorf("got %+v", s)
	}
	os.WriteFile(p, []byte("example.com. 60 IN SOA ns1 h 1 60 60 600 60\n"), 0o644)
	if _, err := ReadSignedZone(p, "example.com"); err == nil {
		t.Error("an unsigned zone was read as signed")
	}
	os.WriteFile(p, []byte("$INCLUDE /etc/passwd\n"), 0o644)
	if _, err := ReadSignedZone(p, "example.com"); err == nil {
		t.Error("$INCLUDE was followed")
	}
}

// holding is a token in a test: locator -> fingerprint.
type holding map[string]string

func (h holding) Find(id string) (hsmcheck.Key, int) {
	fp, ok := h[id]
	if !ok {
		return hsmcheck.Key{}, 0
	}
	return hsmcheck.Key{ID: id, Fingerprint: fp}, 1
}

// world: one zone with a KSK (covered) and a ZSK made after the ceremony,
// two HSMs.
func world(t *testing.T) (Input, *enforcer.Key, *enforcer.Key) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	p := &enforcer.Policy{Name: "test", ParentDSTTL: time.Hour, ParentPropagationDelay: time.Hour}
	z := &enforcer.Zone{Name: "example.com", Policy: p}
	ksk := &enforcer.Key{ID: 1, Locator: "k1", Repository: "R", Role: enforcer.KSK, State: enforcer.Private}
	zsk := &enforcer.Key{ID: 2, Locator: "z2", Repository: "R", Role: enforcer.ZSK, State: enforcer.Private}
	for _, k := range []*enforcer.Key{ksk, zsk} {
		u := &enforcer.Use{Key: k, Zone: z, Role: k.Role, DSAtParent: enforcer.DSSeen,
			States: map[enforcer.RecordType]enforcer.RecordState{enforcer.RecordDNSKEY: enforcer.Omnipresent}}
		k.Uses, z.Keys = []*enforcer.Use{u}, append(z.Keys, u)
	}
	store, err := ledgertest.New(t).Ceremonies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.End(context.Background(), &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Confirmed, Ended: now, Keys: []ledger.KeyRecord{{Locator: "k1"}}}); err != nil {
		t.Fatal(err)
	}
	all := holding{"k1": "f1", "z2": "f2"}
	in := Input{Now: now, State: &enforcer.State{Zones: []*enforcer.Zone{z}, Keys: []*enforcer.Key{ksk, zsk}}, Store: store,
		Tokens: []Token{{Name: "a", Kind: "repository", Repository: "R", Keys: all}, {Name: "b", Kind: "mirror", Repository: "R", Keys: all}},
		ReadZone: func(*enforcer.Zone) (Signatures, error) {
			return Signatures{Count: 1, Earliest: now.Add(72 * time.Hour)}, nil
		}}
	return in, ksk, zsk
}

func TestAssessPaths(t *testing.T) {
	in, _, _ := world(t)
	if a := Assess(in); a.Verdict != NothingLost || a.Exit != 0 {
		t.Fatalf("got %s %d", a.Verdict, a.Exit)
	}
	in.Tokens[1].Keys = holding{}
	if a := Assess(in); a.Verdict != Replace || a.Exit != 1 || len(a.Replace) != 1 || a.Replace[0] != `mirror "b"` {
		t.Fatalf("one HSM lost: %+v", a)
	}
	in.Tokens[0].Keys = holding{}
	a := Assess(in)
	if a.Verdict != Restore || a.Exit != 2 || len(a.Lost) != 2 {
		t.Fatalf("both lost: %+v", a)
	}
	// An HSM that did not answer counts as holding nothing, but the
	// verdict is not a certainty.
	in.Tokens[0].Err = errors.New("gone")
	if u := Assess(in); u.Verdict != Restore || u.Exit != 3 || len(u.Lost) != 2 ||
		!strings.HasPrefix(u.Summary, `cannot tell for certain, repository "a" could not be read: if it holds nothing, every HSM of repository "R" lost keys`) {
		t.Fatalf("one unreachable: %+v", u)
	}
	for _, l := range a.Lost {
		if (l.Locator == "k1") != l.Recoverable {
			t.Errorf("%s recoverable=%v", l.Locator, l.Recoverable)
		}
	}
	// DS removal must be asked two hours (DS TTL + propagation) before expiry.
	z := a.Zones[0]
	if want := in.Now.Add(70 * time.Hour); !z.DSRemovalBy.Equal(want) {
		t.Errorf("DS removal by %v, want %v", z.DSRemovalBy, want)
	}
}

func TestAssessDelivery(t *testing.T) {
	in, _, zsk := world(t)
	// Only the covered KSK: the ZSK is on the backup too.
	if err := in.Store.End(context.Background(), &ledger.Ceremony{ID: "c2", Repository: "R", Status: ledger.Confirmed, Ended: in.Now, Keys: []ledger.KeyRecord{{Locator: zsk.Locator}}}); err != nil {
		t.Fatal(err)
	}
	for i := range in.Tokens {
		in.Tokens[i].Keys = holding{}
	}
	in.Delivery = 48 * time.Hour
	if z := Assess(in).Zones[0]; z.Decision != "can wait for the new HSMs" {
		t.Errorf("P2D: %+v", z)
	}
	in.Delivery = 120 * time.Hour
	a := Assess(in)
	if z := a.Zones[0]; z.Decision != "go insecure" || a.Exit != 2 {
		t.Errorf("P5D: %+v exit %d", z, a.Exit)
	}
	// No DS at the parent: nothing to remove, it can wait.
	for _, u := range in.State.Zones[0].Keys {
		u.DSAtParent = enforcer.DSUnsubmitted
	}
	if z := Assess(in).Zones[0]; z.Decision != "can wait for the new HSMs" {
		t.Errorf("no DS: %+v", z)
	}
	// The signed file unreadable: the worst case.
	for _, u := range in.State.Zones[0].Keys {
		u.DSAtParent = enforcer.DSSeen
	}
	in.ReadZone = func(*enforcer.Zone) (Signatures, error) { return Signatures{}, errors.New("no file") }
	in.Delivery = time.Hour
	if z := Assess(in).Zones[0]; z.Decision != "go insecure" {
		t.Errorf("unreadable: %+v", z)
	}
}

// RRSIG times are serials: read from the inception, 2099 is 2099 and a
// signature that expired in 2001 expired then.
func TestExpiration(t *testing.T) {
	for _, tt := range []struct{ inc, exp string }{
		{"2026-11-20T00:00:00Z", "2099-06-01T00:00:00Z"},
		{"2000-12-18T00:00:00Z", "2001-01-01T00:00:00Z"},
		{"2026-11-20T00:00:00Z", "2026-12-04T00:00:00Z"},
	} {
		inc, _ := time.Parse(time.RFC3339, tt.inc)
		exp, _ := time.Parse(time.RFC3339, tt.exp)
		if got := Expiration(uint32(inc.Unix()), uint32(exp.Unix())); !got.Equal(exp) {
			t.Errorf("%s..%s: got %v", tt.inc, tt.exp, got)
		}
	}
}

// A file of NULs is refused at once, without growing memory.
func TestNULsBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "z")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadSignedZone(p, "example.com")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "binary data (a NUL byte at offset 0): not a zone file") {
		t.Fatalf("got %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("allocated %d bytes reading a 64 MiB file of NULs", grew)
	}
	long := filepath.Join(t.TempDir(), "long")
	if err := os.WriteFile(long, []byte("example.com. 60 IN TXT \""+strings.Repeat("x", 2<<20)+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignedZone(long, "example.com"); err == nil || !strings.Contains(err.Error(), "a line longer than") || len(err.Error()) > 300 {
		t.Errorf("a 2 MiB line: %v", err)
	}
}

// After a restore: every key a confirmed ceremony covers that is still
// needed must be back with the public key recorded; keys used since, on no
// HSM, are lost.
func TestVerifyRestore(t *testing.T) {
	in, ksk, zsk := world(t)
	// The ceremony recorded k1's public key.
	in.Store.History()[0].Keys[0].Fingerprint = "f1"
	good := holding{"k1": "f1"}
	v := Verify(in.State, in.Store, []Token{{Name: "a", Repository: "R", Serial: "new", Keys: good}})
	if v.Complete || len(v.Lost) != 1 || v.Lost[0].Locator != zsk.Locator || len(v.HSMs) != 1 || len(v.HSMs[0].Missing) != 0 {
		t.Fatalf("ZSK made after the ceremony, lost: %+v", v)
	}
	if !strings.HasPrefix(v.HSMs[0].SerialNote, "new serial") {
		t.Errorf("serial note %q", v.HSMs[0].SerialNote)
	}
	// Another key pair under k1's CKA_ID: it differs.
	v = Verify(in.State, in.Store, []Token{{Name: "a", Repository: "R", Keys: holding{"k1": "other", "z2": "f2"}}})
	if v.Complete || len(v.HSMs[0].Differs) != 1 || v.HSMs[0].Differs[0].Locator != ksk.Locator {
		t.Fatalf("another key pair: %+v", v.HSMs[0])
	}
	// k1 missing altogether.
	v = Verify(in.State, in.Store, []Token{{Name: "a", Repository: "R", Keys: holding{"z2": "f2"}}})
	if v.Complete || len(v.HSMs[0].Missing) != 1 {
		t.Fatalf("missing: %+v", v.HSMs[0])
	}
	// Everything back: complete.
	v = Verify(in.State, in.Store, []Token{{Name: "a", Repository: "R", Keys: holding{"k1": "f1", "z2": "f2"}}})
	if !v.Complete || v.Checked != 1 || !strings.HasPrefix(v.Summary, "restore complete: 1 backed-up key checked on 1 HSM") {
		t.Fatalf("complete: %+v", v)
	}
}
