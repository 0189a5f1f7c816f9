//go:build cgo

package hsmcheck

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/pkcs11"
)

// OpenModule loads and initializes the PKCS#11 module at path. A module
// that another library in the process initialized already
// (CKR_CRYPTOKI_ALREADY_INITIALIZED) is used as it is, and not finalized
// at Close: it is not ours to end.
func OpenModule(path string) (Module, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("module %s: %w", path, errors.Unwrap(err))
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("module %s: cannot load it as a PKCS#11 library", path)
	}
	shared := false
	if err := ctx.Initialize(); err != nil {
		var e *Error
		if errors.As(convert(err), &e) && e.Code == ckrCryptokiAlreadyInitialized {
			shared = true
		} else {
			ctx.Destroy()
			if h := softHSMHint(path); h != "" {
				return nil, fmt.Errorf("module %s: initialize: %w; %s", path, convert(err), h)
			}
			return nil, fmt.Errorf("module %s: initialize: %w", path, convert(err))
		}
	}
	return &module{ctx: ctx, shared: shared, attrs: directAttributes(path)}, nil
}

type module struct {
	ctx    *pkcs11.Ctx
	shared bool
	// attrs reads attributes in one C_GetAttributeValue (getattr.go); nil
	// where it cannot, and miekg/pkcs11's two calls are made instead.
	attrs *attrReader
}

func (m *module) Info() (ModuleInfo, error) {
	info, err := m.ctx.GetInfo()
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("module info: %w", convert(err))
	}
	return ModuleInfo{
		Manufacturer: strings.TrimRight(info.ManufacturerID, " \x00"),
		Description:  strings.TrimRight(info.LibraryDescription, " \x00"),
	}, nil
}

func (m *module) Tokens() ([]TokenInfo, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", convert(err))
	}
	out := make([]TokenInfo, 0, len(slots))
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			return nil, fmt.Errorf("slot %d: token info: %w", s, convert(err))
		}
		out = append(out, TokenInfo{
			Slot:         s,
			Label:        strings.TrimRight(ti.Label, " \x00"),
			Serial:       strings.TrimRight(ti.SerialNumber, " \x00"),
			Model:        strings.TrimRight(ti.Model, " \x00"),
			Manufacturer: strings.TrimRight(ti.ManufacturerID, " \x00"),
		})
	}
	return out, nil
}

func (m *module) Login(slot uint, pin string) (Session, error) {
	sh, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, &sessionError{convert(err)}
	}
	own := true
	if err := m.ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil {
		var e *Error
		if !errors.As(convert(err), &e) || e.Code != ckrUserAlreadyLoggedIn {
			m.ctx.CloseSession(sh)
			return nil, convert(err)
		}
		// Logged in by someone else in this process: theirs to end.
		own = false
	}
	return &session{ctx: m.ctx, sh: sh, attrs: m.attrs, ownLogin: own}, nil
}

func (m *module) Close() error {
	var err error
	if !m.shared {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	return convert(err)
}

type session struct {
	ctx      *pkcs11.Ctx
	sh       pkcs11.SessionHandle
	attrs    *attrReader
	ownLogin bool
}

// findBatch is how many handles one C_FindObjects call asks for: a token
// may hand back fewer, in any call, and the search ends only with none.
const findBatch = 4096

func (s *session) Find(class Class, id []byte) ([]Handle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, uint(class))}
	if id != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	if err := s.ctx.FindObjectsInit(s.sh, tmpl); err != nil {
		return nil, fmt.Errorf("find objects: %w", convert(err))
	}
	var out []Handle
	for {
		hs, _, err := s.ctx.FindObjects(s.sh, findBatch)
		if err != nil {
			s.ctx.FindObjectsFinal(s.sh)
			return nil, fmt.Errorf("find objects: %w", convert(err))
		}
		if len(hs) == 0 {
			break
		}
		for _, h := range hs {
			out = append(out, Handle(h))
		}
	}
	if err := s.ctx.FindObjectsFinal(s.sh); err != nil {
		return nil, fmt.Errorf("find objects: %w", convert(err))
	}
	return out, nil
}

func (s *session) Attributes(h Handle, attrs []Attr) ([][]byte, error) {
	if s.attrs != nil {
		v, err := s.attrs.get(uint(s.sh), uint(h), attrs)
		if !errors.Is(err, errBufferTooSmall) {
			return v, err
		}
	}
	tmpl := make([]*pkcs11.Attribute, len(attrs))
	for i, a := range attrs {
		tmpl[i] = &pkcs11.Attribute{Type: uint(a)}
	}
	got, err := s.ctx.GetAttributeValue(s.sh, pkcs11.ObjectHandle(h), tmpl)
	if err != nil {
		return nil, convert(err)
	}
	out := make([][]byte, len(attrs))
	for i, a := range got {
		out[i] = a.Value
	}
	return out, nil
}

func (s *session) Close() error {
	if s.ownLogin {
		s.ctx.Logout(s.sh)
	}
	return convert(s.ctx.CloseSession(s.sh))
}

// convert turns miekg/pkcs11's error ("pkcs11: 0xA0: CKR_PIN_INCORRECT")
// into an *Error.
func convert(err error) error {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		name := pe.Error()
		if i := strings.LastIndex(name, ": "); i >= 0 {
			name = name[i+2:]
		}
		return &Error{Code: uint(pe), Name: name}
	}
	return err
}
