package config

// Secret holds a PIN. Printing it in any form shows a placeholder, so that a
// PIN cannot reach output, logs or error messages by accident.
type Secret string

const redacted = "(redacted)"

// Reveal returns the PIN itself, for the one place that logs in to a token.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// MarshalText keeps a PIN out of JSON and TOML output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
