package hsmcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two configurations of one token: one sets SOFTHSM2_CONF, the other
// inherits the same value from the process; one names the module through
// a symlink. Another value, or another label, is another token.
func TestSameTokenAsTheModuleSeesIt(t *testing.T) {
	dir := t.TempDir()
	module := filepath.Join(dir, "libmodule.so")
	os.WriteFile(module, nil, 0o644)
	link := filepath.Join(dir, "liblink.so")
	os.Symlink(module, link)
	t.Setenv("SOFTHSM2_CONF", "/etc/softhsm/a.conf")
	live := Token{Module: module, Label: "ods-a"}
	for _, same := range []Token{
		{Module: module, Label: "ods-a", Env: map[string]string{"SOFTHSM2_CONF": "/etc/softhsm/a.conf"}},
		{Module: link, Label: "ods-a"},
	} {
		if !SameToken(live, same) || !SameToken(same, live) {
			t.Errorf("%+v: not the same token as %+v", same, live)
		}
	}
	for _, other := range []Token{
		{Module: module, Label: "ods-a", Env: map[string]string{"SOFTHSM2_CONF": "/media/vault-1/softhsm2.conf"}},
		{Module: module, Label: "ods-b"},
	} {
		if SameToken(live, other) || SameToken(other, live) {
			t.Errorf("%+v: the same token as %+v", other, live)
		}
	}
}

func TestSharedSerialAndRecognize(t *testing.T) {
	if SharedSerial("NSS 3", "Mozilla Foundation", "0000000000000000") == "" ||
		SharedSerial("IBM SoftTok", "IBM Corp.", "123") == "" ||
		SharedSerial("SoftHSM v2", "SoftHSM project", "0a1b2c3d4e5f6a7b") != "" {
		t.Fatal("shared serials")
	}
	seen := []Recorded{{Label: "ods-a", Serial: "0a1b", Where: "ceremony X"}}
	c := &Contents{Label: "ods-a", Serial: "0a1b", Model: "SoftHSM v2"}
	if got := RecognizeNote(c, seen); got != "serial 0a1b is the one recorded at ceremony X: not a new token" {
		t.Fatal(got)
	}
	c.Label = "other"
	if got := RecognizeNote(c, seen); !strings.Contains(got, "another token, or relabelled") {
		t.Fatal(got)
	}
	n := &Contents{Label: "ods-a", Serial: "0000000000000000", Model: "NSS 3"}
	if got := RecognizeNote(n, []Recorded{{Label: "ods-a", Serial: "0000000000000000", Where: "ceremony Y"}}); !strings.HasPrefix(got, "serial 0000000000000000 cannot tell a new token") {
		t.Fatal(got)
	}
}
