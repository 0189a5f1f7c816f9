package hsmcheck

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/config"
)

// fakeModule is a token in memory: objects by handle, attributes by type.
type fakeModule struct {
	tokens  []TokenInfo
	pin     string
	objects map[Handle]map[Attr][]byte
	classes map[Handle]Class
	// invalidOnce makes the first attribute read fail with
	// CKR_OBJECT_HANDLE_INVALID, as when the enforcer adds a key meanwhile.
	invalidOnce bool
	calls       int
}

func (m *fakeModule) Tokens() ([]TokenInfo, error) { return m.tokens, nil }
func (m *fakeModule) Close() error                 { return nil }
func (m *fakeModule) Login(slot uint, pin string) (Session, error) {
	if pin != m.pin {
		return nil, &Error{Code: 0xA0, Name: "CKR_PIN_INCORRECT"}
	}
	return m, nil
}
func (m *fakeModule) Find(c Class, id []byte) ([]Handle, error) {
	var out []Handle
	for h, cl := range m.classes {
		if cl == c && (id == nil || string(m.objects[h][AttrID]) == string(id)) {
			out = append(out, h)
		}
	}
	return out, nil
}
func (m *fakeModule) Attributes(h Handle, attrs []Attr) ([][]byte, error) {
	m.calls++
	if m.invalidOnce {
		m.invalidOnce = false
		return nil, &Error{Code: ckrObjectHandleInvalid, Name: "CKR_OBJECT_HANDLE_INVALID"}
	}
	obj := m.objects[h]
	out := make([][]byte, len(attrs))
	for i, a := range attrs {
		v, ok := obj[a]
		if !ok {
			return nil, &Error{Code: ckrAttributeTypeInvalid, Name: "CKR_ATTRIBUTE_TYPE_INVALID"}
		}
		out[i] = v
	}
	return out, nil
}

func ulongBytes(n uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return b
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func newFake() *fakeModule {
	p256 := unhex("06082a8648ce3d030107")
	point := append([]byte{0x04, 0x41, 0x04}, make([]byte, 64)...)
	for i := range 64 {
		point[3+i] = byte(i)
	}
	return &fakeModule{
		tokens: []TokenInfo{{Slot: 7, Label: "ods-a", Serial: "1234"}, {Slot: 9, Label: ""}},
		pin:    "1234",
		classes: map[Handle]Class{
			1: ClassPrivateKey, 2: ClassPublicKey, 3: ClassPrivateKey,
		},
		objects: map[Handle]map[Attr][]byte{
			1: {AttrID: unhex("aa01"), AttrLabel: []byte("aa01"), AttrKeyType: ulongBytes(keyTypeEC),
				AttrSensitive: {1}, AttrExtractable: {0}, AttrNeverExtractable: {1}, AttrLocal: {1}, AttrECParams: p256},
			2: {AttrID: unhex("aa01"), AttrKeyType: ulongBytes(keyTypeEC), AttrECParams: p256, AttrECPoint: point},
			3: {AttrID: unhex("BB02"), AttrLabel: []byte("bb02"), AttrKeyType: ulongBytes(keyTypeRSA),
				AttrSensitive: {1}, AttrExtractable: {1}, AttrNeverExtractable: {0}, AttrLocal: {1},
				AttrModulus: append([]byte{0x00}, append([]byte{0xC0}, make([]byte, 127)...)...), AttrPublicExponent: {0x01, 0x00, 0x01}},
		},
	}
}

func tok() config.Token {
	return config.Token{Name: "SoftHSM", Kind: config.KindRepository, Repository: "SoftHSM", Module: "/fake.so", Label: "ods-a", PIN: "1234"}
}

func read(t *testing.T, m *fakeModule, tk config.Token) (*Inventory, error) {
	t.Helper()
	ms := NewModules(func(string) (Module, error) { return m, nil })
	defer ms.Close()
	return ms.Read(tk)
}

func TestReadKeys(t *testing.T) {
	inv, err := read(t, newFake(), tok())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 2 || inv.Serial != "1234" {
		t.Fatalf("got %+v", inv)
	}
	ec, n := inv.Find("AA01")
	if n != 1 || ec.Type != "EC" || ec.Curve != "P-256" || ec.Bits != 256 || !ec.Sensitive || ec.Extractable || !ec.NeverExtractable {
		t.Errorf("EC key: %+v (%d)", ec, n)
	}
	// The EC fingerprint comes from the public object: SHA-256 of X|Y.
	xy := make([]byte, 64)
	for i := range xy {
		xy[i] = byte(i)
	}
	if ec.Fingerprint != FingerprintDNSKEY(xy) {
		t.Errorf("EC fingerprint %s, want SHA-256 of X|Y", ec.Fingerprint)
	}
	rsa, _ := inv.Find("bb02")
	if rsa.Type != "RSA" || rsa.Bits != 1024 {
		t.Errorf("RSA key: %+v", rsa)
	}
	// RFC 3110: exponent length, exponent, modulus without leading zeros.
	want := append([]byte{3, 1, 0, 1, 0xC0}, make([]byte, 127)...)
	if rsa.Fingerprint != FingerprintDNSKEY(want) {
		t.Errorf("RSA fingerprint %s, want RFC 3110 form", rsa.Fingerprint)
	}
}

func TestReadRetriesInvalidHandle(t *testing.T) {
	m := newFake()
	m.invalidOnce = true
	inv, err := read(t, m, tok())
	if err != nil || len(inv.Keys) != 2 {
		t.Fatalf("got %v, %v; want a clean second read", inv, err)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		tk   func(config.Token) config.Token
		want string
	}{
		{"wrong pin", func(t config.Token) config.Token { t.PIN = "0000"; return t },
			`repository "SoftHSM": token "ods-a": login: CKR_PIN_INCORRECT`},
		{"no label", func(t config.Token) config.Token { t.Label = "nope"; return t },
			`repository "SoftHSM": token "nope" not found in /fake.so (tokens present: "ods-a")`},
		{"no module", func(t config.Token) config.Token { t.Module = ""; return t },
			`repository "SoftHSM": no PKCS#11 module configured`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := read(t, newFake(), tt.tk(tok()))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "0000") {
				t.Fatal("the PIN reached an error message")
			}
		})
	}
}

func TestModuleLoadedOnce(t *testing.T) {
	loads := 0
	ms := NewModules(func(string) (Module, error) { loads++; return newFake(), nil })
	defer ms.Close()
	for range 3 {
		if _, err := ms.Read(tok()); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 1 {
		t.Fatalf("module loaded %d times, want once per process", loads)
	}
	failing := NewModules(func(string) (Module, error) { loads++; return nil, errors.New("cannot load") })
	failing.Read(tok())
	failing.Read(tok())
	if loads != 2 {
		t.Fatalf("a failing module was tried %d times, want once", loads-1)
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

func TestReadIDs(t *testing.T) {
	ms := NewModules(func(string) (Module, error) { return newFake(), nil })
	defer ms.Close()
	inv, err := ms.ReadIDs(tok(), []string{"BB02"})
	if err != nil || len(inv.Keys) != 1 || inv.Keys[0].ID != "bb02" {
		t.Fatalf("got %+v, %v", inv, err)
	}
	inv, err = ms.ReadIDs(tok(), []string{})
	if err != nil || len(inv.Keys) != 0 {
		t.Fatalf("no ids: got %+v, %v", inv, err)
	}
	if _, err := ms.ReadIDs(tok(), []string{"xyz"}); err == nil {
		t.Fatal("a CKA_ID that is not hex was accepted")
	}
}

// One call per object when the guess is right; a mixed token still reads.
func TestOneCallPerObject(t *testing.T) {
	m := newFake()
	delete(m.classes, 3) // only the EC key pair
	if _, err := read(t, m, tok()); err != nil {
		t.Fatal(err)
	}
	if m.calls != 2 {
		t.Errorf("%d attribute calls for one key pair, want 2", m.calls)
	}
}
