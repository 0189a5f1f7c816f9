package hsmcheck

// A token's identity. PKCS#11 gives a token a label, a serial, a model and a
// manufacturer, and nothing of it is unique by rule: NSS softoken gives
// every token serial 0000000000000000, openCryptoki's soft token 123, and a
// copied SoftHSMv2 token keeps its serial. So a serial is never taken as an
// identity by itself: what is compared is the label, serial, model and
// manufacturer together, and the keys the token holds, and where those
// cannot tell two tokens apart, the answer says so.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// SharedSerial says why serial is known not to tell tokens apart ("" when
// nothing is known against it): an implementation that gives every token
// the same one, or an empty or all-zero serial.
func SharedSerial(model, manufacturer, serial string) string {
	s := strings.TrimSpace(serial)
	switch {
	case strings.HasPrefix(model, "NSS") || strings.HasPrefix(manufacturer, "Mozilla"):
		return fmt.Sprintf("NSS softoken gives every token serial %s", s)
	case model == "IBM SoftTok":
		return fmt.Sprintf("openCryptoki's soft token gives every token serial %s", s)
	case strings.Trim(s, "0") == "":
		return fmt.Sprintf("serial %q is no identity", s)
	}
	return ""
}

// SameToken reports whether two configured tokens are certainly one token:
// the same module (after symlinks), label and module environment as the
// module sees it: a token's Env is on top of this process's, so a variable
// one token sets and the other inherits with the same value is the same.
func SameToken(a, b Token) bool {
	if !SameLabel(a.Label, b.Label) || realPath(a.Module) != realPath(b.Module) {
		return false
	}
	for _, env := range []map[string]string{a.Env, b.Env} {
		for k := range env {
			if effective(a.Env, k) != effective(b.Env, k) {
				return false
			}
		}
	}
	return true
}

func effective(env map[string]string, k string) string {
	if v, ok := env[k]; ok {
		return v
	}
	return os.Getenv(k)
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// sameKeys reports whether a and b hold the same private keys: the same
// CKA_IDs, and the same public keys where both have them.
func sameKeys(a, b *Contents) bool {
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	ka, kb := append([]Key(nil), a.Keys...), append([]Key(nil), b.Keys...)
	sort.Slice(ka, func(i, j int) bool { return ka[i].ID < ka[j].ID })
	sort.Slice(kb, func(i, j int) bool { return kb[i].ID < kb[j].ID })
	for i := range ka {
		if ka[i].ID != kb[i].ID || ka[i].Fingerprint != "" && kb[i].Fingerprint != "" && ka[i].Fingerprint != kb[i].Fingerprint {
			return false
		}
	}
	return true
}

// Resemblance says how far two tokens read can be told apart, for an
// operator who needs them to be two: "" when their label, serial, model or
// manufacturer differ (and the serial is not a shared one). It never
// decides on the serial alone.
func Resemblance(a, b Result) string {
	if a.Contents == nil || b.Contents == nil {
		return ""
	}
	ca, cb := a.Contents, b.Contents
	if SameToken(a.Token, b.Token) {
		return fmt.Sprintf("%s is the same token as %s (same module, label and environment): it holds no second copy of the keys",
			b.Token.Describe(), a.Token.Describe())
	}
	shared := SharedSerial(ca.Model, ca.Manufacturer, ca.Serial)
	if ca.Label != cb.Label || ca.Model != cb.Model || ca.Manufacturer != cb.Manufacturer {
		return ""
	}
	if ca.Serial != cb.Serial && shared == "" {
		return ""
	}
	what := fmt.Sprintf("%s and %s show the same label %q, model and manufacturer", a.Token.Describe(), b.Token.Describe(), ca.Label)
	if ca.Serial == cb.Serial {
		what = fmt.Sprintf("%s and %s show the same label %q, serial %s, model and manufacturer", a.Token.Describe(), b.Token.Describe(), ca.Label, ca.Serial)
	}
	if shared != "" {
		what += " (" + shared + ")"
	}
	if sameKeys(ca, cb) {
		return what + fmt.Sprintf(" and hold the same %s: nothing read tells them apart; make sure they are two tokens (their module configuration names two places)", human.Count(len(ca.Keys), "key"))
	}
	return what + ": they hold different keys, so they are two tokens"
}

// Recorded is a token as a record named it.
type Recorded struct {
	Label, Serial string
	Where         string // ceremony 20261203T...-SoftHSM-ab12cd
}

// RecognizeNote says whether a token read now is one recorded before:
// never on its serial alone, and never on a serial known to be shared.
func RecognizeNote(c *Contents, seen []Recorded) string {
	if c == nil {
		return ""
	}
	var sameSerial *Recorded
	for i, r := range seen {
		if r.Serial != c.Serial {
			continue
		}
		if sameSerial == nil {
			sameSerial = &seen[i]
		}
		if r.Label == c.Label {
			sameSerial = &seen[i]
			break
		}
	}
	if shared := SharedSerial(c.Model, c.Manufacturer, c.Serial); shared != "" {
		if sameSerial != nil {
			return fmt.Sprintf("serial %s cannot tell a new token from the one recorded at %s (%s): only its keys were checked", c.Serial, sameSerial.Where, shared)
		}
		return fmt.Sprintf("serial %s (%s): only its keys were checked", c.Serial, shared)
	}
	switch {
	case sameSerial == nil:
		return fmt.Sprintf("new serial %s", c.Serial)
	case sameSerial.Label != c.Label:
		return fmt.Sprintf("serial %s was recorded at %s with label %q, now %q: another token, or relabelled", c.Serial, sameSerial.Where, sameSerial.Label, c.Label)
	}
	return fmt.Sprintf("serial %s is the one recorded at %s: not a new token", c.Serial, strings.TrimPrefix(sameSerial.Where, ""))
}
