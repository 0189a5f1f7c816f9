// Package hsmcheck reads what is really on a token through PKCS#11: its
// identity and every private key, with a fingerprint of the public half.
// Tokens are read in child processes that a deadline kills (child.go); this
// file is the reading itself, done in the child or, in tests, on a fake
// module.
package hsmcheck

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Contents is what one token holds.
type Contents struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Repository   string `json:"repository,omitempty"`
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Model        string `json:"model"`
	Manufacturer string `json:"manufacturer"`
	Keys         []Key  `json:"keys"`

	byID map[string][]int
}

// Key is one private key object.
type Key struct {
	ID string `json:"id"` // CKA_ID, lowercase hex
	// Label is CKA_LABEL, read when the Request asks for labels.
	Label string `json:"label,omitempty"`
	Type  string `json:"type"` // RSA, EC, EdDSA, DSA or CKK_0x..
	Bits  int    `json:"bits,omitempty"`
	Curve string `json:"curve,omitempty"` // P-256, P-384, P-521, Ed25519, Ed448
	// PublicKey is the public key as a DNSKEY carries it (RFC 3110 for RSA,
	// X|Y for ECDSA, the point for EdDSA); nil when neither the private
	// object nor a public object has the material.
	PublicKey []byte `json:"public_key,omitempty"`
	// Fingerprint is the SHA-256 of PublicKey, in hex.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Find returns the key whose CKA_ID is id (hex, any case), and how many
// private keys carry that CKA_ID: more than one is a token that the enforcer
// reads ambiguously.
func (c *Contents) Find(id string) (Key, int) {
	if c.byID == nil {
		c.byID = make(map[string][]int, len(c.Keys))
		for i, k := range c.Keys {
			c.byID[k.ID] = append(c.byID[k.ID], i)
		}
	}
	idx := c.byID[strings.ToLower(id)]
	if len(idx) == 0 {
		return Key{}, 0
	}
	return c.Keys[idx[0]], len(idx)
}

// Fresh returns c with its index by CKA_ID rebuilt at the next Find: for
// contents whose keys were changed (a record with keys added).
func Fresh(c *Contents) *Contents {
	c.byID = nil
	return c
}

// Holding is what a token holds, as the packages that judge keys see it
// (hooks, recovery, inventory): *Contents is the real one; their tests hand
// in tokens of their own.
type Holding interface {
	// Find returns the private key whose CKA_ID is id and how many carry it.
	Find(id string) (Key, int)
}

// FingerprintDNSKEY is the fingerprint of a DNSKEY's public key field.
func FingerprintDNSKEY(pub []byte) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// Modules opens each module once and closes them all at the end: a module
// may be initialized only once per process.
type Modules struct {
	Open   Opener
	loaded map[string]Module
	failed map[string]error
}

// NewModules returns a cache that loads modules with open.
func NewModules(open Opener) *Modules {
	return &Modules{Open: open, loaded: map[string]Module{}, failed: map[string]error{}}
}

func (ms *Modules) get(path string) (Module, error) {
	if m, ok := ms.loaded[path]; ok {
		return m, nil
	}
	if err, ok := ms.failed[path]; ok {
		return nil, err
	}
	m, err := ms.Open(path)
	if err != nil {
		ms.failed[path] = err
		return nil, err
	}
	ms.loaded[path] = m
	return m, nil
}

// reset finalizes the module at path, to be loaded again on next use
// (and forgets a failed load, which may have been transient).
func (ms *Modules) reset(path string) {
	if m, ok := ms.loaded[path]; ok {
		m.Close()
		delete(ms.loaded, path)
	}
	delete(ms.failed, path)
}

// Close finalizes every module that was loaded.
func (ms *Modules) Close() {
	for p, m := range ms.loaded {
		m.Close()
		delete(ms.loaded, p)
	}
}

// Read reads one token with the modules of this process: what a child does
// for each token it is given.
func (ms *Modules) Read(t Token, req Request) (*Contents, error) {
	raw, err := rawIDs(t, req.IDs)
	if err != nil {
		return nil, err
	}
	w := want{ids: raw, noPublic: req.NoPublic, labels: req.Labels}
	if req.NoPublic {
		if w.pubIDs, err = rawIDs(t, req.PublicIDs); err != nil {
			return nil, err
		}
	}
	var inv *Contents
	// SoftHSMv2 rewrites its token.object in place when a user logs in: a
	// process that reads the token at that moment sees it empty (no token
	// with that label, no user PIN) or gets CKR_GENERAL_ERROR. Such answers are asked
	// again, four times over half a second; a wrong PIN never is.
	for attempt := 1; ; attempt++ {
		inv, err = ms.read(t, w)
		if err == nil || attempt == transientAttempts || !transient(err) {
			break
		}
		// The module may keep what it read: finalize it, and load it
		// afresh for the next try.
		ms.reset(t.Module)
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Describe(), err)
	}
	return inv, nil
}

// rawIDs decodes hex CKA_IDs; nil stays nil (every key), empty stays empty.
func rawIDs(t Token, ids []string) ([][]byte, error) {
	var raw [][]byte
	for _, id := range ids {
		b, err := hex.DecodeString(id)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("%s: CKA_ID %q is not hex", t.Describe(), id)
		}
		raw = append(raw, b)
	}
	if ids != nil && raw == nil {
		raw = [][]byte{}
	}
	return raw, nil
}

// transientAttempts bounds the reads of a token that answers as if it were
// being written.
const transientAttempts = 5

// notFoundError is a token label that no slot carries.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// transient reports whether err may be a token caught while it is written.
func transient(err error) bool {
	var nf *notFoundError
	var busy *BusyError
	if errors.As(err, &nf) || errors.As(err, &busy) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		// GENERAL_ERROR, FUNCTION_FAILED, DEVICE_ERROR, TOKEN_NOT_PRESENT,
		// TOKEN_NOT_RECOGNIZED, and USER_PIN_NOT_INITIALIZED (token.object
		// read half written): never PIN_INCORRECT or PIN_LOCKED.
		case 0x05, 0x06, 0x30, 0xE0, 0xE1, 0x190:
			return true
		}
	}
	return false
}

// want is a Request with its CKA_IDs decoded.
type want struct {
	ids, pubIDs      [][]byte
	noPublic, labels bool
}

func (ms *Modules) read(t Token, w want) (*Contents, error) {
	if t.Module == "" {
		return nil, errors.New("no PKCS#11 module configured")
	}
	m, err := ms.get(t.Module)
	if err != nil {
		return nil, err
	}
	ti, err := findToken(m, t)
	if err != nil {
		return nil, err
	}
	sm, copied := m.(snapshotModule)
	if err := unreadableObjects(isSoftHSM(t.Module) || copied, ti.Serial, sm.denied); err != nil {
		return nil, fmt.Errorf("token %q: %w", t.Label, err)
	}
	s, err := m.Login(ti.Slot, t.PIN.Reveal())
	var se *sessionError
	if errors.As(err, &se) && isCode(err, ckrSlotIDInvalid, ckrTokenNotPresent) {
		// The slot changed between the listing and the session (a token
		// re-plugged, a virtual slot rebuilt): no PIN was tried, so the
		// token is looked for again, once, by its label.
		if ti, err = findToken(m, t); err != nil {
			return nil, err
		}
		s, err = m.Login(ti.Slot, t.PIN.Reveal())
	}
	if err != nil {
		return nil, fmt.Errorf("token %q: login: %w", t.Label, err)
	}
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	// The enforcer may create or delete keys while we read: a handle found a
	// moment ago can turn invalid. Read again from the start, a few times.
	// A session that vanished (an HA fail-over, a hardserver restart) is
	// opened again once, on the token found again by label and serial, and
	// logged in to with the PIN it accepted a moment ago: never with one
	// it refused, which Login's caller records and no one tries again.
	reopened := false
	for attempt := 1; ; attempt++ {
		inv := &Contents{
			Name: t.Name, Kind: t.Kind, Repository: t.Repository,
			Label: ti.Label, Serial: ti.Serial, Model: ti.Model, Manufacturer: ti.Manufacturer,
		}
		err := readKeys(s, inv, w)
		if err == nil {
			return inv, nil
		}
		if !reopened && isCode(err, ckrSessionHandleInvalid, ckrSessionClosed, ckrUserNotLoggedIn) {
			reopened = true
			s.Close()
			again, ferr := findToken(m, t)
			if ferr != nil {
				return nil, fmt.Errorf("token %q: session lost (%v), and %w", t.Label, err, ferr)
			}
			if again.Serial != ti.Serial {
				return nil, fmt.Errorf("token %q: session lost (%v), and the token now found by that label has serial %s, not %s", t.Label, err, again.Serial, ti.Serial)
			}
			ti = again
			if s, err = m.Login(ti.Slot, t.PIN.Reveal()); err != nil {
				return nil, fmt.Errorf("token %q: session lost, and login again: %w", t.Label, err)
			}
			continue
		}
		if attempt >= readAttempts || !isCode(err, ckrObjectHandleInvalid) {
			if reopened && isCode(err, ckrSessionHandleInvalid, ckrSessionClosed, ckrUserNotLoggedIn) {
				return nil, fmt.Errorf("token %q: session lost again after it was opened anew: %w", t.Label, err)
			}
			return nil, fmt.Errorf("token %q: %w", t.Label, err)
		}
	}
}

// isCode says whether err is a PKCS#11 error with one of codes.
func isCode(err error, codes ...uint) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if e.Code == c {
			return true
		}
	}
	return false
}

// findToken finds the one token that carries t's label, as PKCS#11 pads
// labels (blanks to 32 bytes), whatever its slot number: slots are
// numbered anew when a token is re-plugged. A slot that vanishes between
// the listing and its token's details is listed again, once.
func findToken(m Module, t Token) (TokenInfo, error) {
	infos, err := m.Tokens()
	if isCode(err, ckrSlotIDInvalid, ckrTokenNotPresent) {
		infos, err = m.Tokens()
	}
	if err != nil {
		return TokenInfo{}, fmt.Errorf("module %s: %w", t.Module, err)
	}
	var match []TokenInfo
	var labels []string
	for _, ti := range infos {
		if ti.Label != "" { // an uninitialized token, as SoftHSMv2 always offers
			labels = append(labels, fmt.Sprintf("%q", ti.Label))
		}
		if SameLabel(t.Label, ti.Label) {
			match = append(match, ti)
		}
	}
	switch len(match) {
	case 0:
		present := "none"
		sort.Strings(labels) // slots move between runs: the order says nothing
		if len(labels) > 0 {
			present = strings.Join(labels, ", ")
		}
		msg := fmt.Sprintf("token %q not found in %s (tokens present: %s)", t.Label, t.Module, present)
		return TokenInfo{}, &notFoundError{withSoftHSMHint(msg, t.Module)}
	case 1:
		return match[0], nil
	}
	return TokenInfo{}, fmt.Errorf("token %q: %s carry that label in %s", t.Label, human.Count(len(match), "token"), t.Module)
}

// SameLabel compares a configured token label with one a token reports
// as PKCS#11 stores them: 32 bytes, padded with blanks, so that trailing
// blanks (or NULs) never tell two labels apart and a longer label
// (multi-byte UTF-8 counts its bytes) is compared on what the token can
// hold of it.
func SameLabel(configured, token string) bool {
	pad := func(s string) string {
		if len(s) > 32 {
			s = s[:32]
		}
		return strings.TrimRight(s, " \x00")
	}
	return pad(configured) == pad(token)
}

// readAttempts bounds the re-reads of a token whose objects change under us.
const readAttempts = 5

var (
	// What a private key object is read for: no more, since on a token of
	// thousands every attribute counts (SoftHSMv2 decrypts each byte
	// string of a private object).
	privateAttrs  = []Attr{AttrID, AttrKeyType}
	labelledAttrs = []Attr{AttrID, AttrKeyType, AttrLabel}
	publicAttrs   = []Attr{AttrID, AttrKeyType}
	rsaAttrs      = []Attr{AttrModulus, AttrPublicExponent}
	ecAttrs       = []Attr{AttrECParams}
	ecPointAttrs  = []Attr{AttrECParams, AttrECPoint}
)

// typeAttrs are the type-specific attributes of a key type; private EC
// objects carry no point.
func typeAttrs(kt uint64, public bool) []Attr {
	switch kt {
	case keyTypeRSA:
		return rsaAttrs
	case keyTypeEC, keyTypeECEdwards:
		if public {
			return ecPointAttrs
		}
		return ecAttrs
	}
	return nil
}

// fetcher reads an object's attributes in one C_GetAttributeValue where it
// can: the common ones and those of the key type it guesses, the type of
// the previous key (a token's keys are mostly of one type). A wrong guess
// costs a refused call and a second one.
type fetcher struct {
	s     Session
	guess uint64
	// refused is why the token withheld an attribute (left nil), the
	// first time it did.
	refused map[Attr]error
}

// fetch returns the common attributes and sets k's type-specific fields.
// typeAt is the index of CKA_KEY_TYPE in common.
func (f *fetcher) fetch(h Handle, common []Attr, typeAt int, public bool, k *Key) ([][]byte, error) {
	extra := typeAttrs(f.guess, public)
	if extra != nil {
		v, err := f.s.Attributes(h, append(append([]Attr(nil), common...), extra...))
		if err == nil && ulong(v[typeAt]) == f.guess {
			setMaterial(f.guess, extra, v[len(common):], k)
			return v[:len(common)], nil
		}
		var e *Error
		if err != nil && (!errors.As(err, &e) || !refusal(e.Code)) {
			return nil, err
		}
	}
	v, err := f.attributes(h, common)
	if err != nil {
		return nil, err
	}
	kt := ulong(v[typeAt])
	if extra := typeAttrs(kt, public); extra != nil {
		m, err := f.attributes(h, extra)
		if err != nil {
			return nil, err
		}
		setMaterial(kt, extra, m, k)
	}
	f.guess = kt
	return v, nil
}

// find returns the objects of class: all of them when ids is nil, else
// those whose CKA_ID is in ids.
func find(s Session, class Class, ids [][]byte) ([]Handle, error) {
	if ids == nil {
		return s.Find(class, nil)
	}
	var out []Handle
	for _, id := range ids {
		hs, err := s.Find(class, id)
		if err != nil {
			return nil, err
		}
		out = append(out, hs...)
	}
	return out, nil
}

func readKeys(s Session, inv *Contents, w want) error {
	ids, noPublic, pubIDs := w.ids, w.noPublic, w.pubIDs
	privs, err := find(s, ClassPrivateKey, ids)
	if err != nil {
		return err
	}
	f := &fetcher{s: s, guess: keyTypeEC}
	attrs := privateAttrs
	if w.labels {
		attrs = labelledAttrs
	}
	noID := 0
	for _, h := range privs {
		var k Key
		v, err := f.fetch(h, attrs, 1, false, &k)
		if err != nil {
			return fmt.Errorf("private key object: %w", err)
		}
		if v[0] == nil {
			// A key whose CKA_ID cannot be read cannot be told from one
			// that is missing: the whole token is unknown, not a key gone.
			noID++
			continue
		}
		k.ID = hex.EncodeToString(v[0])
		k.Type = keyTypeName(ulong(v[1]))
		if w.labels {
			k.Label = string(v[2])
		}
		inv.Keys = append(inv.Keys, k)
	}
	if noID > 0 {
		return &unreadableIDError{n: noID, of: len(privs), why: f.refused[AttrID]}
	}
	sort.SliceStable(inv.Keys, func(i, j int) bool { return inv.Keys[i].ID < inv.Keys[j].ID })
	// Public objects give the fingerprint where the private object has no
	// public material (EC keys).
	need, search := false, ids
	for _, k := range inv.Keys {
		if noPublic {
			need, search = len(pubIDs) > 0, pubIDs
			break
		}
		if k.Fingerprint == "" {
			need = true
			break
		}
	}
	if !need {
		return nil
	}
	pubs, err := find(s, ClassPublicKey, search)
	if err != nil {
		return err
	}
	for _, h := range pubs {
		var pk Key
		v, err := f.fetch(h, publicAttrs, 1, true, &pk)
		if err != nil {
			return fmt.Errorf("public key object: %w", err)
		}
		if len(v[0]) == 0 {
			// A public key with no CKA_ID (or one withheld) belongs to no
			// key that can be named: its private key stays without a
			// fingerprint.
			continue
		}
		id := hex.EncodeToString(v[0])
		i := sort.Search(len(inv.Keys), func(i int) bool { return inv.Keys[i].ID >= id })
		if i < len(inv.Keys) && inv.Keys[i].ID == id && inv.Keys[i].Fingerprint == "" {
			inv.Keys[i].Fingerprint, inv.Keys[i].PublicKey = pk.Fingerprint, pk.PublicKey
		}
	}
	return nil
}

// setMaterial sets size, curve and fingerprint from the type-specific
// attribute values vals (fetched as attrs).
func setMaterial(kt uint64, attrs []Attr, vals [][]byte, k *Key) {
	get := func(a Attr) []byte {
		for i, x := range attrs {
			if x == a {
				return vals[i]
			}
		}
		return nil
	}
	switch kt {
	case keyTypeRSA:
		mod := new(big.Int).SetBytes(get(AttrModulus))
		k.Bits = mod.BitLen()
		if exp := get(AttrPublicExponent); mod.Sign() > 0 && len(exp) > 0 {
			k.PublicKey = rsaDNSKEY(mod.Bytes(), new(big.Int).SetBytes(exp).Bytes())
			k.Fingerprint = FingerprintDNSKEY(k.PublicKey)
		}
	case keyTypeEC, keyTypeECEdwards:
		k.Curve, k.Bits = curve(get(AttrECParams))
		if point := get(AttrECPoint); len(point) > 0 {
			k.PublicKey = ecDNSKEY(point, kt == keyTypeEC)
			k.Fingerprint = FingerprintDNSKEY(k.PublicKey)
		}
	}
}

// refusal says whether code refuses some attributes of an object, not the
// object or the session: the others are asked for one at a time.
func refusal(code uint) bool {
	return code == ckrAttributeTypeInvalid || code == ckrAttributeSensitive || code == ckrBufferTooSmall
}

// attributes fetches attrs in one call; where the token refuses the batch
// because an attribute is invalid, sensitive or larger than it said, it
// asks one at a time, leaves the refused ones nil and notes why.
func (f *fetcher) attributes(h Handle, attrs []Attr) ([][]byte, error) {
	v, err := f.s.Attributes(h, attrs)
	if err == nil {
		return v, nil
	}
	var e *Error
	if !errors.As(err, &e) || !refusal(e.Code) {
		return nil, err
	}
	v = make([][]byte, len(attrs))
	for i, a := range attrs {
		one, err := f.s.Attributes(h, []Attr{a})
		if err == nil {
			v[i] = one[0]
			continue
		}
		if !errors.As(err, &e) || !refusal(e.Code) {
			return nil, err
		}
		if f.refused == nil {
			f.refused = map[Attr]error{}
		}
		if f.refused[a] == nil {
			f.refused[a] = err
		}
	}
	return v, nil
}

// unreadableIDError is a token that withheld the CKA_ID of some private
// keys: which keys it holds cannot be said.
type unreadableIDError struct {
	n, of int
	why   error
}

func (e *unreadableIDError) Error() string {
	why := "withheld"
	if e.why != nil {
		why = e.why.Error()
	}
	return fmt.Sprintf("the CKA_ID of %d of %s could not be read (%s): which keys the token holds is unknown", e.n, human.Count(e.of, "private key"), why)
}

func (e *unreadableIDError) Unwrap() error { return e.why }

func boolean(b []byte) bool { return len(b) > 0 && b[0] != 0 }

// ulong decodes a CK_ULONG in the machine's (little-endian) byte order.
func ulong(b []byte) uint64 {
	var n uint64
	for i := len(b) - 1; i >= 0; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n
}

func keyTypeName(kt uint64) string {
	switch kt {
	case keyTypeRSA:
		return "RSA"
	case keyTypeDSA:
		return "DSA"
	case keyTypeEC:
		return "EC"
	case keyTypeECEdwards:
		return "EdDSA"
	}
	return fmt.Sprintf("CKK_0x%X", kt)
}

var curves = []struct {
	der  []byte
	name string
	bits int
}{
	{[]byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, "P-256", 256},
	{[]byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, "P-384", 384},
	{[]byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, "P-521", 521},
	{[]byte{0x06, 0x03, 0x2b, 0x65, 0x70}, "Ed25519", 256},
	{[]byte{0x06, 0x03, 0x2b, 0x65, 0x71}, "Ed448", 456},
	{append([]byte{0x13, 0x0c}, "edwards25519"...), "Ed25519", 256},
	{append([]byte{0x13, 0x0a}, "edwards448"...), "Ed448", 456},
}

func curve(params []byte) (string, int) {
	for _, c := range curves {
		if bytes.Equal(params, c.der) {
			return c.name, c.bits
		}
	}
	if len(params) == 0 {
		return "", 0
	}
	return "params:" + hex.EncodeToString(params), 0
}

// rsaDNSKEY encodes an RSA public key as RFC 3110 does.
func rsaDNSKEY(mod, exp []byte) []byte {
	var b []byte
	if len(exp) <= 255 {
		b = append(b, byte(len(exp)))
	} else {
		b = append(b, 0, byte(len(exp)>>8), byte(len(exp)))
	}
	b = append(b, exp...)
	return append(b, mod...)
}

// ecDNSKEY turns CKA_EC_POINT (a DER OCTET STRING, or the raw point on some
// tokens) into the DNSKEY's public key: X|Y for ECDSA, the point for EdDSA.
func ecDNSKEY(point []byte, uncompressed bool) []byte {
	if len(point) > 2 && point[0] == 0x04 {
		switch {
		case int(point[1]) == len(point)-2:
			point = point[2:]
		case point[1] == 0x81 && len(point) > 3 && int(point[2]) == len(point)-3:
			point = point[3:]
		}
	}
	if uncompressed && len(point)%2 == 1 && point[0] == 0x04 {
		point = point[1:]
	}
	return point
}
