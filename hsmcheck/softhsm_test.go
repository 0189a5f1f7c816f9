package hsmcheck

import "testing"

// SoftHSMv2 names a token's folder by a UUID and derives the serial from
// it: how a token read through PKCS#11 is matched with its folder.
func TestSoftHSMSerial(t *testing.T) {
	for uuid, want := range map[string]string{
		"98e72d89-b292-a857-744d-4e630d6a5703": "744d4e630d6a5703",
		"token.object":                         "",
		"98e72d89-b292-a857-744d4e630d6a57035": "",
	} {
		if got := softHSMSerial(uuid); got != want {
			t.Errorf("softHSMSerial(%q) = %q, want %q", uuid, got, want)
		}
	}
}
