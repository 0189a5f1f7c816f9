package hsmcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/secret"
)

// In-process tests of the reading itself, on the fake module.

func pinOf(s string) secret.Value { return secret.Value(s) }

func oneToken(keys ...keySpec) (*fakeModule, Token) {
	m := newFakeModule(fakeSpec{Tokens: []fakeToken{{Label: "ods-a", PIN: "1234", Serial: "1", Keys: keys}}})
	return m, Token{Name: "SoftHSM", Kind: KindRepository, Repository: "SoftHSM", Module: "/fake.so", Label: "ods-a", PIN: "1234"}
}

func readWith(t *testing.T, m *fakeModule, tok Token) (*Contents, error) {
	t.Helper()
	ms := NewModules(func(string) (Module, error) { return m, nil })
	defer ms.Close()
	return ms.Read(tok, Request{})
}

// A handle that turns invalid while we read (the enforcer adds or deletes a
// key meanwhile) makes the reader start again.
func TestReadRetriesInvalidHandle(t *testing.T) {
	m, tok := oneToken(keySpec{ID: ecID, Type: "EC"}, keySpec{ID: rsaID, Type: "RSA", Bits: 1024})
	m.invalidOnce = true
	c, err := readWith(t, m, tok)
	if err != nil || len(c.Keys) != 2 {
		t.Fatalf("got %v, %v; want a clean second read", c, err)
	}
}

func TestModuleLoadedOnce(t *testing.T) {
	loads := 0
	m, tok := oneToken(keySpec{ID: ecID, Type: "EC"})
	ms := NewModules(func(string) (Module, error) { loads++; return m, nil })
	defer ms.Close()
	for range 3 {
		if _, err := ms.Read(tok, Request{}); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 1 {
		t.Fatalf("module loaded %d times, want once per process", loads)
	}
	failing := NewModules(func(string) (Module, error) { loads++; return nil, errors.New("cannot load") })
	failing.Read(tok, Request{})
	failing.Read(tok, Request{})
	if loads != 2 {
		t.Fatalf("a failing module was tried %d times, want once", loads-1)
	}
}

// One attribute call per object when the guess of the key type is right.
func TestOneCallPerObject(t *testing.T) {
	m, tok := oneToken(keySpec{ID: ecID, Type: "EC"})
	if _, err := readWith(t, m, tok); err != nil {
		t.Fatal(err)
	}
	if m.calls != 2 {
		t.Errorf("%d attribute calls for one key pair, want 2", m.calls)
	}
}

func TestECDNSKEY(t *testing.T) {
	raw := append([]byte{0x04}, make([]byte, 64)...)
	der := append([]byte{0x04, 65}, raw...)
	if got := ecDNSKEY(der, true); len(got) != 64 {
		t.Errorf("DER point: %d bytes, want 64", len(got))
	}
	if got := ecDNSKEY(raw, true); len(got) != 64 {
		t.Errorf("raw point: %d bytes, want 64", len(got))
	}
	ed := append([]byte{0x04, 32}, make([]byte, 32)...)
	if got := ecDNSKEY(ed, false); len(got) != 32 {
		t.Errorf("Ed25519 point: %d bytes, want 32", len(got))
	}
}

// RFC 3110: exponent length, exponent, modulus without leading zeros.
func TestRSADNSKEY(t *testing.T) {
	got := rsaDNSKEY([]byte{0xC0, 0x01}, []byte{0x01, 0x00, 0x01})
	if want := []byte{3, 1, 0, 1, 0xC0, 0x01}; string(got) != string(want) {
		t.Errorf("got %x, want %x", got, want)
	}
	long := make([]byte, 300)
	if got := rsaDNSKEY([]byte{1}, long); got[0] != 0 || got[1] != 1 || got[2] != 44 {
		t.Errorf("a long exponent: %x", got[:3])
	}
}

// A token caught while another process writes it (CKR_GENERAL_ERROR) is
// asked again; a wrong PIN is not, so that no PIN counter is spent.
func TestTransientRetried(t *testing.T) {
	spec := fakeSpec{FlakyTokens: 2, Tokens: []fakeToken{{Label: "a", PIN: "1", Keys: []keySpec{{ID: ecID, Type: "EC"}}}}}
	m := newFakeModule(spec)
	ms := NewModules(func(string) (Module, error) { return m, nil })
	c, err := ms.Read(Token{Name: "R", Kind: KindRepository, Module: "/fake.so", Label: "a", PIN: "1"}, Request{})
	if err != nil || len(c.Keys) != 1 || m.listings != 3 {
		t.Fatalf("got %v, %d listings", err, m.listings)
	}
	m = newFakeModule(fakeSpec{FlakyTokens: 5, Tokens: spec.Tokens})
	ms = NewModules(func(string) (Module, error) { return m, nil })
	if _, err := ms.Read(Token{Name: "R", Kind: KindRepository, Module: "/fake.so", Label: "a", PIN: "1"}, Request{}); err == nil || m.listings != transientAttempts {
		t.Errorf("a token that stays broken: %v after %d listings", err, m.listings)
	}
	m = newFakeModule(fakeSpec{Tokens: spec.Tokens})
	ms = NewModules(func(string) (Module, error) { return m, nil })
	if _, err := ms.Read(Token{Name: "R", Kind: KindRepository, Module: "/fake.so", Label: "a", PIN: "2"}, Request{}); err == nil || m.listings != 1 {
		t.Errorf("a wrong PIN was tried again: %v after %d listings", err, m.listings)
	}
}

// A request to the child carries the PIN in its JSON only: printed, it
// shows the placeholder.
func TestWireRequestPrintsNoPIN(t *testing.T) {
	w := wireRequest{Tokens: []wireToken{{Name: "a", PIN: "s3cr3t-pin"}}}
	for _, s := range []string{fmt.Sprintf("%v", w), fmt.Sprintf("%+v", w), fmt.Sprintf("%#v", w)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("printed the PIN: %s", s)
		}
	}
	b, _ := json.Marshal(w)
	var back wireRequest
	if err := json.Unmarshal(b, &back); err != nil || back.Tokens[0].PIN != "s3cr3t-pin" {
		t.Errorf("the PIN does not cross to the child: %v %q", err, back.Tokens[0].PIN)
	}
}

// A session that vanishes mid-read (an HA fail-over) is opened again once,
// with the PIN the token accepted; one that vanishes again is an error,
// not a partial listing.
func TestReadReopensLostSessionOnce(t *testing.T) {
	m, tok := oneToken(keySpec{ID: ecID, Type: "EC"}, keySpec{ID: rsaID, Type: "RSA", Bits: 1024})
	m.sessionLostAt = 2
	c, err := readWith(t, m, tok)
	if err != nil || len(c.Keys) != 2 || m.logins != 2 {
		t.Fatalf("got %v, %v after %d logins; want both keys after a second login", c, err, m.logins)
	}
	m, tok = oneToken(keySpec{ID: ecID, Type: "EC"}, keySpec{ID: rsaID, Type: "RSA", Bits: 1024})
	m.sessionLostAt = 2
	ms := NewModules(func(string) (Module, error) { return losingModule{m}, nil })
	defer ms.Close()
	_, err = ms.Read(tok, Request{})
	if err == nil || !strings.Contains(err.Error(), "session lost again after it was opened anew: private key object: CKR_SESSION_HANDLE_INVALID") || m.logins != 2 {
		t.Fatalf("got %v after %d logins; want an error after the one reopening", err, m.logins)
	}
}

// losingModule loses every session it opens, at its first attribute read.
type losingModule struct{ *fakeModule }

func (l losingModule) Login(slot uint, pin string) (Session, error) {
	s, err := l.fakeModule.Login(slot, pin)
	if err == nil {
		l.fakeModule.sessionLostAt = l.fakeModule.calls + 1
	}
	return s, err
}

// A CKA_ID the token withholds makes the token unknown, never its keys
// missing.
func TestReadWithheldIDIsNotMissing(t *testing.T) {
	m, tok := oneToken(keySpec{ID: ecID, Type: "EC"})
	m.refuse = map[Attr]bool{AttrID: true}
	c, err := readWith(t, m, tok)
	if err == nil || !strings.Contains(err.Error(), "the CKA_ID of 1 of 1 private key could not be read (CKR_ATTRIBUTE_SENSITIVE)") {
		t.Fatalf("got %v, %v; want the token unknown", c, err)
	}
	// A withheld label is no reason: the keys are read.
	m, tok = oneToken(keySpec{ID: ecID, Type: "EC"})
	m.refuse = map[Attr]bool{AttrLabel: true}
	ms := NewModules(func(string) (Module, error) { return m, nil })
	defer ms.Close()
	if c, err := ms.Read(tok, Request{Labels: true}); err != nil || len(c.Keys) != 1 || c.Keys[0].Fingerprint == "" || c.Keys[0].Label != "" {
		t.Fatalf("got %v, %v; want the key with its fingerprint, no label", c, err)
	}
}

func TestSameLabel(t *testing.T) {
	long := strings.Repeat("é", 20) // 40 bytes: the token keeps 32
	for _, c := range []struct {
		conf, token string
		same        bool
	}{
		{"ods-a", "ods-a", true},
		{"ods-a ", "ods-a", true},
		{"ods-a", "ods-a\x00\x00", true},
		{"ods-a", "ods-b", false},
		{" ods-a", "ods-a", false},
		{"zoné", "zoné", true},
		{long, long[:32], true},
		{long, long[:30], false},
	} {
		if got := SameLabel(c.conf, c.token); got != c.same {
			t.Errorf("SameLabel(%q, %q) = %v, want %v", c.conf, c.token, got, c.same)
		}
	}
}
