package hsmcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"time"
)

// A fake PKCS#11 module built from a spec, so that a child process (the
// test binary run as ChildCommand) can build the same one from
// $HSMCHECK_FAKE.

type fakeSpec struct {
	Tokens []fakeToken `json:"tokens"`
	// FlakyTokens: the first so many slot listings fail with
	// CKR_GENERAL_ERROR, as SoftHSMv2 does while another process rewrites
	// its token.object.
	FlakyTokens int `json:"flaky_tokens"`
}

type fakeToken struct {
	Label  string    `json:"label"`
	Serial string    `json:"serial"`
	PIN    string    `json:"pin"`
	Keys   []keySpec `json:"keys"`
	Hang   bool      `json:"hang"` // login never returns, as a dead HSM
	// WriteFile, when set, makes login write to that file as SoftHSMv2
	// rewrites token.object: after BeforeMS milliseconds "started", then
	// WriteMS milliseconds later "written".
	WriteFile string `json:"write_file"`
	BeforeMS  int    `json:"before_ms"`
	WriteMS   int    `json:"write_ms"`
}

// keySpec is a key pair to put on a token.
type keySpec struct {
	ID   string `json:"id"`   // CKA_ID, hex
	Type string `json:"type"` // EC (P-256) or RSA
	Bits int    `json:"bits"` // RSA only
}

// material is the public key a spec'd key has, in DNSKEY form, and the
// attributes that carry it.
func (k keySpec) material() (dnskey []byte, priv, pub map[Attr][]byte) {
	id, _ := hex.DecodeString(k.ID)
	stream := func(n int) []byte {
		var out []byte
		for i := 0; len(out) < n; i++ {
			sum := sha256.Sum256(append([]byte(k.ID), byte(i)))
			out = append(out, sum[:]...)
		}
		return out[:n]
	}
	priv = map[Attr][]byte{AttrID: id, AttrLabel: []byte(k.ID), AttrSensitive: {1}, AttrExtractable: {0},
		AttrNeverExtractable: {1}, AttrLocal: {1}}
	pub = map[Attr][]byte{AttrID: id}
	switch k.Type {
	case "RSA":
		mod := stream(k.Bits / 8)
		mod[0] |= 0x80
		exp := []byte{0x01, 0x00, 0x01}
		for _, m := range []map[Attr][]byte{priv, pub} {
			m[AttrKeyType] = ulongBytes(keyTypeRSA)
			m[AttrModulus] = mod
			m[AttrPublicExponent] = exp
		}
		return rsaDNSKEY(new(big.Int).SetBytes(mod).Bytes(), exp), priv, pub
	default:
		xy := stream(64)
		params, _ := hex.DecodeString("06082a8648ce3d030107")
		priv[AttrKeyType], pub[AttrKeyType] = ulongBytes(keyTypeEC), ulongBytes(keyTypeEC)
		priv[AttrECParams], pub[AttrECParams] = params, params
		pub[AttrECPoint] = append([]byte{0x04, 0x41, 0x04}, xy...)
		return xy, priv, pub
	}
}

// fakeModule is the tokens of a spec in memory: objects by handle,
// attributes by type.
type fakeModule struct {
	spec     fakeSpec
	slots    []fakeSlot
	calls    int
	logins   int
	listings int
	// invalidOnce makes the first attribute read fail with
	// CKR_OBJECT_HANDLE_INVALID, as when the enforcer adds a key meanwhile.
	invalidOnce bool
	// sessionLostAt makes that attribute read (counted in calls) find the
	// session gone, as after an HA fail-over: it and every later call of
	// that session fail with CKR_SESSION_HANDLE_INVALID.
	sessionLostAt int
	// refuse answers CKR_ATTRIBUTE_SENSITIVE for these attributes.
	refuse map[Attr]bool
}

type fakeSlot struct {
	objects map[Handle]map[Attr][]byte
	classes map[Handle]Class
}

func newFakeModule(spec fakeSpec) *fakeModule {
	m := &fakeModule{spec: spec}
	for _, t := range spec.Tokens {
		s := fakeSlot{objects: map[Handle]map[Attr][]byte{}, classes: map[Handle]Class{}}
		h := Handle(1)
		for _, k := range t.Keys {
			_, priv, pub := k.material()
			s.objects[h], s.classes[h] = priv, ClassPrivateKey
			s.objects[h+1], s.classes[h+1] = pub, ClassPublicKey
			h += 2
		}
		m.slots = append(m.slots, s)
	}
	return m
}

// fakeOpener opens the module of $HSMCHECK_FAKE, in a child.
func fakeOpener(string) (Module, error) {
	var spec fakeSpec
	if err := json.Unmarshal([]byte(os.Getenv("HSMCHECK_FAKE")), &spec); err != nil {
		return nil, err
	}
	return newFakeModule(spec), nil
}

func (m *fakeModule) Tokens() ([]TokenInfo, error) {
	m.listings++
	if m.listings <= m.spec.FlakyTokens {
		return nil, &Error{Code: 0x05, Name: "CKR_GENERAL_ERROR"}
	}
	var out []TokenInfo
	for i, t := range m.spec.Tokens {
		out = append(out, TokenInfo{Slot: uint(i), Label: t.Label, Serial: t.Serial})
	}
	// SoftHSMv2 always offers an uninitialised token too.
	return append(out, TokenInfo{Slot: uint(len(m.spec.Tokens))}), nil
}

func (m *fakeModule) Close() error { return nil }

func (m *fakeModule) Info() (ModuleInfo, error) {
	return ModuleInfo{Manufacturer: "hsmcheck", Description: "fake module"}, nil
}

func (m *fakeModule) Login(slot uint, pin string) (Session, error) {
	if int(slot) >= len(m.spec.Tokens) {
		return nil, &Error{Code: 0xE0, Name: "CKR_TOKEN_NOT_PRESENT"}
	}
	t := m.spec.Tokens[slot]
	if t.Hang {
		time.Sleep(time.Hour)
	}
	if t.WriteFile != "" {
		time.Sleep(time.Duration(t.BeforeMS) * time.Millisecond)
		os.WriteFile(t.WriteFile, []byte("started"), 0o600)
		time.Sleep(time.Duration(t.WriteMS) * time.Millisecond)
		os.WriteFile(t.WriteFile, []byte("written"), 0o600)
	}
	if pin != t.PIN {
		return nil, &Error{Code: 0xA0, Name: "CKR_PIN_INCORRECT"}
	}
	m.logins++
	return &fakeSession{m: m, s: m.slots[slot]}, nil
}

type fakeSession struct {
	m    *fakeModule
	s    fakeSlot
	lost bool
}

func (f *fakeSession) Close() error { return nil }

func (f *fakeSession) Find(c Class, id []byte) ([]Handle, error) {
	var out []Handle
	for h, cl := range f.s.classes {
		if cl == c && (id == nil || string(f.s.objects[h][AttrID]) == string(id)) {
			out = append(out, h)
		}
	}
	return out, nil
}

func (f *fakeSession) Attributes(h Handle, attrs []Attr) ([][]byte, error) {
	f.m.calls++
	if f.m.calls == f.m.sessionLostAt {
		f.lost = true
	}
	if f.lost {
		return nil, &Error{Code: ckrSessionHandleInvalid, Name: "CKR_SESSION_HANDLE_INVALID"}
	}
	if f.m.invalidOnce {
		f.m.invalidOnce = false
		return nil, &Error{Code: ckrObjectHandleInvalid, Name: "CKR_OBJECT_HANDLE_INVALID"}
	}
	obj := f.s.objects[h]
	out := make([][]byte, len(attrs))
	for i, a := range attrs {
		v, ok := obj[a]
		if f.m.refuse[a] {
			return nil, &Error{Code: ckrAttributeSensitive, Name: "CKR_ATTRIBUTE_SENSITIVE"}
		}
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
