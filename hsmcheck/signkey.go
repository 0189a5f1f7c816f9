package hsmcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// A signing key on a token: the Ed25519 key that signs the ledger's
// checkpoints, where the token does CKM_EDDSA (SoftHSMv2 2.6.1 does, with
// CKM_EC_EDWARDS_KEY_PAIR_GEN). Like every PKCS#11 call, in a child
// process bounded by the caller's deadline and killed with its group; a
// refused PIN is recorded and never tried again (Token.Logins).

// SignCommand is the hidden subcommand that serves SignKey's requests.
const SignCommand = "__sign-key"

// SignKey is an Ed25519 key pair on a token, found by CKA_LABEL.
type SignKey struct {
	Token Token
	Label string
	// Exe is the program and arguments that serve SignCommand; the
	// default is this executable with SignCommand.
	Exe []string
}

// signRequest is what crosses to the child, PIN included, on its stdin.
type signRequest struct {
	Op      string // "public", "sign" or "generate"
	Module  string
	Token   string // the token's label
	PIN     wirePIN
	Label   string // the key's
	Message []byte
}

type signReply struct {
	Public    []byte `json:"public,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	Err       string `json:"error,omitempty"`
	Refused   string `json:"refused,omitempty"`
}

// Public reads the key's Ed25519 public key (32 bytes).
func (k SignKey) Public(ctx context.Context) ([]byte, error) {
	r, err := k.call(ctx, "public", nil)
	return r.Public, err
}

// Sign signs msg with CKM_EDDSA (pure Ed25519).
func (k SignKey) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	r, err := k.call(ctx, "sign", msg)
	return r.Signature, err
}

// Generate makes the key pair on the token (private: sensitive, never
// extractable) and returns its public key; a key of that label there
// already is refused.
func (k SignKey) Generate(ctx context.Context) ([]byte, error) {
	r, err := k.call(ctx, "generate", nil)
	return r.Public, err
}

func (k SignKey) call(ctx context.Context, op string, msg []byte) (signReply, error) {
	var reply signReply
	var adm Admission
	if k.Token.Logins != nil {
		a, err := k.Token.Logins.Admit(k.Token)
		if err != nil {
			return reply, err
		}
		adm = a
	}
	exe, err := childExe(k.Exe, SignCommand)
	if err != nil {
		return reply, err
	}
	in, err := json.Marshal(signRequest{Op: op, Module: k.Token.Module, Token: k.Token.Label, PIN: wirePIN(k.Token.PIN.Reveal()), Label: k.Label, Message: msg})
	if err != nil {
		return reply, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	cmd := proc.Command(ctx, exe[0], exe[1:]...)
	cmd.Args[0] = "ods-keyguard"
	cmd.Env = childEnv(k.Token)
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	var stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := proc.Run(ctx, cmd)
	what := fmt.Sprintf("%s: signing key %q", k.Token.Describe(), k.Label)
	if ctx.Err() != nil {
		return reply, fmt.Errorf("%s: no answer in time", what)
	}
	if err := json.Unmarshal(out.Bytes(), &reply); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" && runErr != nil {
			msg = runErr.Error()
		}
		return reply, fmt.Errorf("%s: signing process: %s", what, msg)
	}
	if reply.Err != "" {
		err := fmt.Errorf("%s: %s", what, reply.Err)
		if reply.Refused != "" && adm != nil {
			err = adm.Refused(k.Token, reply.Refused, err)
		}
		return reply, err
	}
	return reply, nil
}

// ServeSign is the child's side of SignKey: one request on r, one reply
// on w.
func ServeSign(r io.Reader, w io.Writer) error {
	var req signRequest
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("%s: reading request: %w", SignCommand, err)
	}
	pub, sig, err := signOp(req.Op, req.Module, req.Token, secret.Value(req.PIN), req.Label, req.Message)
	reply := signReply{Public: pub, Signature: sig}
	if err != nil {
		reply.Err = err.Error()
		reply.Refused = pinRefusal(err)
	}
	return json.NewEncoder(w).Encode(reply)
}

// errNoKey is a token without the signing key.
var errNoKey = errors.New("no such key on the token: make it with ods-keyguard ledger keygen --hsm")

// edPoint reads an Ed25519 public key from CKA_EC_POINT: a DER OCTET
// STRING of 32 bytes, or the 32 bytes themselves.
func edPoint(b []byte) ([]byte, error) {
	switch {
	case len(b) == 34 && b[0] == 0x04 && b[1] == 32:
		return b[2:], nil
	case len(b) == 32:
		return b, nil
	}
	return nil, fmt.Errorf("CKA_EC_POINT of %d bytes: not an Ed25519 public key", len(b))
}
