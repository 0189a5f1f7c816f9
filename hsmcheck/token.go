package hsmcheck

import (
	"fmt"

	"github.com/ods-keyguard/ods-keyguard/secret"
)

// Token kinds: whose keys a token holds.
const (
	KindRepository  = "repository"
	KindMirror      = "mirror"
	KindBackupToken = "backup token"
)

// Token is everything needed to open one token: a repository's, a mirror's
// or a backup token's.
type Token struct {
	Name       string // repository, mirror or backup token name
	Kind       string // KindRepository, KindMirror or KindBackupToken
	Repository string // the repository whose keys it holds ("" for a backup token)
	Module     string // the PKCS#11 module's path
	Label      string // CKA_LABEL of the token
	PIN        secret.Value
	// PINSource is the file the PIN was read from (conf.xml or a
	// pin_file): a refused PIN is tried again once it changes.
	PINSource string
	// Logins clears each login first: the PINs this token refused
	// (package pinlock); nil logs in as asked, in tests that need none.
	Logins Logins
	// Env is the environment the module needs (SOFTHSM2_CONF,
	// ChrystokiConfigurationPath ...), on top of this process's.
	Env map[string]string
}

// Describe names the token for messages: `mirror "site-b"`.
func (t Token) Describe() string { return fmt.Sprintf("%s %q", t.Kind, t.Name) }

// Request says which keys to read and how much of them.
type Request struct {
	// IDs, when not nil, limits the read to the keys whose CKA_ID (hex) is
	// one of them: a search per key, for the hook, which must not list a
	// token of thousands.
	IDs []string `json:"ids"`
	// NoPublic skips the public-key objects: which private keys are there,
	// of what type and size, but no public key where the private object
	// carries none (EC). For check, which answers within a time limit.
	NoPublic bool `json:"no_public"`
	// PublicIDs, with NoPublic, are the keys whose public key is read all
	// the same (a search per key): the KSKs and CSKs whose DS check matches
	// against the parent's by digest.
	PublicIDs []string `json:"public_ids,omitempty"`
	// Expect are the keys the caller expects on the tokens (CKA_ID, hex):
	// a source that answers from a record (inventory.Recorded) reads those
	// the record lacks from the token itself, so that a key made after
	// the record is not taken for a key gone. A live read ignores it.
	Expect []string `json:"-"`
	// Labels reads each private key's CKA_LABEL too: for inventory and
	// verify, which name the keys the enforcer does not know by it.
	// Others leave it: on a token of thousands every attribute counts.
	Labels bool `json:"labels,omitempty"`
}

// Logins is what a token's logins are cleared by before a child logs in,
// so that a PIN a token refused is not tried again: package pinlock's
// record of refused PINs.
type Logins interface {
	// Admit says whether t may log in with its PIN: an error when it may
	// not (the token is not touched), else what records a refusal of this
	// login (nil when there is nothing to record, as without a PIN).
	Admit(t Token) (Admission, error)
}

// Admission records a token's refusal of the PIN it was admitted with.
type Admission interface {
	// Refused records that t refused the PIN with code (CKR_PIN_INCORRECT
	// ...) and returns the error to report in loginErr's place.
	Refused(t Token, code string, loginErr error) error
}
