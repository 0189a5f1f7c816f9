// Package secret holds a PIN or a password so that it cannot be printed by
// accident: every formatting of it, JSON and TOML included, shows a
// placeholder. Only Reveal gives the value, for the one call that logs in.
package secret

// Value is a PIN or a password.
type Value string

const redacted = "(redacted)"

// Reveal returns the secret itself.
func (s Value) Reveal() string { return string(s) }

func (s Value) String() string   { return redacted }
func (s Value) GoString() string { return redacted }

// MarshalText keeps a secret out of JSON and TOML output.
func (s Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Empty reports whether no secret was given.
func (s Value) Empty() bool { return s == "" }
