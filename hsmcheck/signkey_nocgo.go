//go:build !cgo

package hsmcheck

import (
	"errors"

	"github.com/ods-keyguard/ods-keyguard/secret"
)

func signOp(op, module, label string, pin secret.Value, keyLabel string, msg []byte) (pub, sig []byte, err error) {
	return nil, nil, errors.New("built without cgo: PKCS#11 unavailable")
}
