//go:build !cgo

package hsmcheck

import "errors"

// OpenModule cannot load a PKCS#11 module in a binary built without cgo.
func OpenModule(path string) (Module, error) {
	return nil, errors.New("built without cgo: PKCS#11 unavailable")
}
