package hsmcheck

import (
	"os"
	"path/filepath"
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
