//go:build cgo

package hsmcheck

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// PKCS#11 3.0 values that miekg/pkcs11 does not name.
const (
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
	ckkECEdwards           = 0x40
)

// edwards25519 is CKA_EC_PARAMS for Ed25519: the printable string, as
// SoftHSMv2 takes it.
var edwards25519 = []byte{0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'}

// signOp runs one request in this (child) process.
func signOp(op, modulePath, label string, pin secret.Value, keyLabel string, msg []byte) (pub, sig []byte, err error) {
	m, err := OpenModule(modulePath)
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	ctx := m.(*module).ctx
	tokens, err := m.Tokens()
	if err != nil {
		return nil, nil, err
	}
	slot, found := uint(0), false
	for _, t := range tokens {
		if t.Label == label {
			slot, found = t.Slot, true
			break
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("token %q: not found", label)
	}
	// A read-write session: generate makes objects (the reader's
	// sessions are read-only).
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, nil, fmt.Errorf("token %q: open session: %w", label, convert(err))
	}
	defer ctx.CloseSession(sh)
	if err := ctx.Login(sh, pkcs11.CKU_USER, pin.Reveal()); err != nil {
		var e *Error
		if !errors.As(convert(err), &e) || e.Code != ckrUserAlreadyLoggedIn {
			return nil, nil, fmt.Errorf("token %q: login: %w", label, convert(err))
		}
	}
	defer ctx.Logout(sh)
	find := func(class uint) (pkcs11.ObjectHandle, bool, error) {
		tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel)}
		if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
			return 0, false, convert(err)
		}
		hs, _, err := ctx.FindObjects(sh, 2)
		ctx.FindObjectsFinal(sh)
		if err != nil {
			return 0, false, convert(err)
		}
		if len(hs) > 1 {
			return 0, false, fmt.Errorf("%s labelled %q: give each a label of its own", human.Count(len(hs), "key"), keyLabel)
		}
		return firstOr(hs)
	}
	public := func() ([]byte, error) {
		h, ok, err := find(pkcs11.CKO_PUBLIC_KEY)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errNoKey
		}
		a, err := ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return nil, convert(err)
		}
		return edPoint(a[0].Value)
	}
	switch op {
	case "public":
		pub, err = public()
		return pub, nil, err
	case "sign":
		h, ok, err := find(pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, errNoKey
		}
		if err := ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, h); err != nil {
			return nil, nil, fmt.Errorf("CKM_EDDSA: %w", convert(err))
		}
		sig, err := ctx.Sign(sh, msg)
		if err != nil {
			return nil, nil, fmt.Errorf("CKM_EDDSA: %w", convert(err))
		}
		return nil, sig, nil
	case "generate":
		if _, ok, err := find(pkcs11.CKO_PRIVATE_KEY); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("a key labelled %q is there already", keyLabel)
			}
			return nil, nil, err
		}
		id := make([]byte, 16)
		rand.Read(id)
		pubT := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, edwards25519), pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, id)}
		privT := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, id)}
		if _, _, err := ctx.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT); err != nil {
			return nil, nil, fmt.Errorf("CKM_EC_EDWARDS_KEY_PAIR_GEN (does the token do Ed25519?): %w", convert(err))
		}
		pub, err = public()
		return pub, nil, err
	}
	return nil, nil, errors.New("unknown request " + op)
}

func firstOr(hs []pkcs11.ObjectHandle) (pkcs11.ObjectHandle, bool, error) {
	if len(hs) == 0 {
		return 0, false, nil
	}
	return hs[0], true, nil
}
