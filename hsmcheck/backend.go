package hsmcheck

import "fmt"

// The PKCS#11 numbers hsmcheck uses, in its own types: miekg/pkcs11 defines
// none without cgo, and a fake module needs them too.
type (
	// Attr is a CKA_* attribute type.
	Attr uint
	// Class is a CKO_* object class.
	Class uint
	// Handle is an object handle within a session.
	Handle uint
)

const (
	ClassPublicKey  Class = 0x02
	ClassPrivateKey Class = 0x03

	AttrLabel            Attr = 0x003
	AttrKeyType          Attr = 0x100
	AttrID               Attr = 0x102
	AttrSensitive        Attr = 0x103
	AttrModulus          Attr = 0x120
	AttrPublicExponent   Attr = 0x122
	AttrExtractable      Attr = 0x162
	AttrLocal            Attr = 0x163
	AttrNeverExtractable Attr = 0x164
	AttrECParams         Attr = 0x180
	AttrECPoint          Attr = 0x181
)

// CKK_* key types.
const (
	keyTypeRSA       = 0x00
	keyTypeDSA       = 0x01
	keyTypeEC        = 0x03
	keyTypeECEdwards = 0x40
)

// CKR_* values the reader tells apart.
const (
	ckrSlotIDInvalid              = 0x03
	ckrAttributeSensitive         = 0x11
	ckrAttributeTypeInvalid       = 0x12
	ckrObjectHandleInvalid        = 0x82
	ckrSessionClosed              = 0xB0
	ckrSessionHandleInvalid       = 0xB3
	ckrTokenNotPresent            = 0xE0
	ckrBufferTooSmall             = 0x150
	ckrUserAlreadyLoggedIn        = 0x100
	ckrUserNotLoggedIn            = 0x101
	ckrCryptokiAlreadyInitialized = 0x191
)

// Error is a PKCS#11 return value that is not CKR_OK.
type Error struct {
	Code uint
	Name string // CKR_PIN_INCORRECT
}

func (e *Error) Error() string {
	if e.Name != "" {
		return e.Name
	}
	return fmt.Sprintf("CKR 0x%X", e.Code)
}

// sessionError is a session that could not be opened: no PIN was tried.
type sessionError struct{ err error }

func (e *sessionError) Error() string { return "open session: " + e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

// ModuleInfo is what C_GetInfo says the module is.
type ModuleInfo struct {
	Manufacturer, Description string
}

// TokenInfo describes a token present in a slot.
type TokenInfo struct {
	Slot                               uint
	Label, Serial, Model, Manufacturer string
}

// Module is the part of a loaded PKCS#11 module that hsmcheck uses.
type Module interface {
	// Info says what the module is (C_GetInfo).
	Info() (ModuleInfo, error)
	// Tokens lists the slots that have a token present.
	Tokens() ([]TokenInfo, error)
	// Login opens a read-only session on slot and logs in as the user. Its
	// error is the PKCS#11 one; the caller says "login".
	Login(slot uint, pin string) (Session, error)
	// Close finalizes the module.
	Close() error
}

// Session is a logged-in read-only session.
type Session interface {
	// Find returns every object of class, searching in batches; with id,
	// only the objects whose CKA_ID is id.
	Find(class Class, id []byte) ([]Handle, error)
	// Attributes fetches attrs of one object in one call. A value the token
	// does not have comes back nil; an invalid or sensitive attribute fails
	// the whole call, as C_GetAttributeValue does.
	Attributes(h Handle, attrs []Attr) ([][]byte, error)
	Close() error
}

// Opener loads a PKCS#11 module by path.
type Opener func(path string) (Module, error)
