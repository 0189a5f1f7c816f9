package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// LedgerSigner is the signer of the log's checkpoints ([ledger]
// signing_key), read when a checkpoint is to be signed; nil when none is
// configured. The key file is checked like a pin_file: a key that the
// group could change or others read signs nothing.
func (c *Config) LedgerSigner() func(ctx context.Context) (note.Signer, error) {
	if c.Ledger.SigningHSM != nil {
		return c.hsmSigner
	}
	path := c.Ledger.SigningKey
	if path == "" {
		return nil
	}
	return func(ctx context.Context) (note.Signer, error) {
		skey, err := readSecretFile("signing_key", path)
		if err != nil {
			return nil, fmt.Errorf("[ledger] %w", err)
		}
		s, err := note.NewSigner(strings.TrimSpace(skey.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("[ledger] signing_key %s: not a key of ods-keyguard ledger keygen (%v)", path, err)
		}
		return s, nil
	}
}

// maxKeyFile bounds what is read of a public key file.
const maxKeyFile = 4096

// LedgerKeys are the public keys whose checkpoints ledger verify accepts:
// the files of public_keys, else signing_key.pub, else the public half of
// signing_key where this user can read it. Files that cannot be read are
// left out (verify then says it cannot check).
func (c *Config) LedgerKeys() []string {
	var keys []string
	files := c.Ledger.PublicKeys
	if len(files) == 0 && c.Ledger.SigningKey != "" {
		files = []string{c.Ledger.SigningKey + ".pub"}
	}
	for _, f := range files {
		if k, err := ReadPublicKey(f); err == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 && len(c.Ledger.PublicKeys) == 0 && c.Ledger.SigningKey != "" {
		if skey, err := readSecretFile("signing_key", c.Ledger.SigningKey); err == nil {
			if k, err := ledger.PublicKey(skey.Reveal()); err == nil {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// ReadPublicKey reads a public key file of ledger keygen (NAME+HASH+KEY).
func ReadPublicKey(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("public key %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b := make([]byte, maxKeyFile)
	n, _ := f.Read(b)
	k := strings.TrimSpace(string(b[:n]))
	if _, err := note.NewVerifier(k); err != nil {
		return "", fmt.Errorf("public key %s: not a public key of ods-keyguard ledger keygen (%v)", path, err)
	}
	return k, nil
}

// SigningKeyOnToken is [ledger.signing_hsm] as a key to use, its PIN read.
func (c *Config) SigningKeyOnToken() (hsmcheck.SignKey, string, error) {
	h := c.Ledger.SigningHSM
	if h == nil {
		return hsmcheck.SignKey{}, "", errors.New("[ledger.signing_hsm]: not configured")
	}
	pin, err := ReadPinFile(h.PinFile)
	if err != nil {
		return hsmcheck.SignKey{}, "", fmt.Errorf("[ledger.signing_hsm] %w", err)
	}
	t := hsmcheck.Token{Name: "ledger signing key", Kind: "signing token", Module: h.Module, Label: h.TokenLabel, PIN: pin,
		PINSource: h.PinFile, Env: h.Env, Logins: c.PINRefusals()}
	return hsmcheck.SignKey{Token: t, Label: h.KeyLabel}, h.KeyName, nil
}

// hsmSigner signs with the key on the token: its public key read once,
// each signature made in a child bounded by ctx.
func (c *Config) hsmSigner(ctx context.Context) (note.Signer, error) {
	k, name, err := c.SigningKeyOnToken()
	if err != nil {
		return nil, err
	}
	pub, err := k.Public(ctx)
	if err != nil {
		return nil, err
	}
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, fmt.Errorf("[ledger.signing_hsm] key_name %q: %w", name, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return tokenSigner{name: name, hash: v.KeyHash(), sign: func(msg []byte) ([]byte, error) { return k.Sign(ctx, msg) }}, nil
}

// tokenSigner is a note.Signer whose key is on a token.
type tokenSigner struct {
	name string
	hash uint32
	sign func([]byte) ([]byte, error)
}

func (s tokenSigner) Name() string                    { return s.name }
func (s tokenSigner) KeyHash() uint32                 { return s.hash }
func (s tokenSigner) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }
