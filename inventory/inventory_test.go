package inventory

import (
	"errors"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

func result(name, kind string, keys ...hsmcheck.Key) hsmcheck.Result {
	return hsmcheck.Result{
		Token:    hsmcheck.Token{Name: name, Kind: kind, Repository: "R"},
		Contents: &hsmcheck.Contents{Name: name, Keys: keys},
	}
}

func ec(id, fp string) hsmcheck.Key {
	return hsmcheck.Key{ID: id, Type: "EC", Curve: "P-256", Bits: 256, Fingerprint: fp}
}

func TestBuild(t *testing.T) {
	st := &enforcer.State{Keys: []*enforcer.Key{
		{ID: 1, Locator: "a1", Repository: "R", Role: enforcer.KSK, State: enforcer.Private, Algorithm: 13, Bits: 256},
		{ID: 2, Locator: "a2", Repository: "R", Role: enforcer.ZSK, State: enforcer.Unused, Algorithm: 13, Bits: 256},
		{ID: 3, Locator: "a3", Repository: "R", Role: enforcer.ZSK, State: enforcer.Delete, Algorithm: 13, Bits: 256},
		{ID: 4, Locator: "a4", Repository: "R", Role: enforcer.ZSK, State: enforcer.Unused, Algorithm: 8, Bits: 2048},
	}}
	rsa := hsmcheck.Key{ID: "a4", Type: "RSA", Bits: 1024}
	res := []hsmcheck.Result{
		result("R", hsmcheck.KindRepository, ec("a1", "f1"), ec("a2", "f2"), rsa, ec("ff", "")),
		result("m", hsmcheck.KindMirror, ec("a1", "other"), ec("a2", "f2"), ec("a2", "f2"), hsmcheck.Key{ID: "a4", Type: "RSA", Bits: 2048}),
	}
	r := Build(st, res, "")
	want := map[string]string{
		"a3/R": "", // DELETE: missing is no problem
		"a1/m": FingerprintMismatch,
		"a2/m": Duplicate,
		"a4/R": TypeMismatch,
	}
	got := map[string]string{}
	for _, p := range r.Problems {
		got[p.Locator+"/"+p.Token] = p.Kind
	}
	for k, kind := range want {
		if got[k] != kind {
			t.Errorf("%s: got %q, want %q (all: %v)", k, got[k], kind, got)
		}
	}
	if len(r.Problems) != 3 {
		t.Errorf("problems: %+v", r.Problems)
	}
	if len(r.Orphans) != 1 || r.Orphans[0].ID != "ff" || r.Orphans[0].Token != "R" {
		t.Errorf("orphans: %+v", r.Orphans)
	}
	if r.Rows[2].Present["R"] != Absent || r.Rows[2].Use != enforcer.UseDeleted {
		t.Errorf("deleted row: %+v", r.Rows[2])
	}
}

func TestBuildUnreadable(t *testing.T) {
	st := &enforcer.State{Keys: []*enforcer.Key{{ID: 1, Locator: "a1", Repository: "R", State: enforcer.Private, Algorithm: 13}}}
	res := []hsmcheck.Result{{Token: hsmcheck.Token{Name: "m", Kind: hsmcheck.KindMirror, Repository: "R"}, Err: errors.New("login: CKR_PIN_INCORRECT")}}
	r := Build(st, res, "")
	if !r.Unreadable || len(r.Problems) != 0 || r.Rows[0].Present["m"] != Unknown || r.Tokens[0].Reachable {
		t.Errorf("got %+v", r)
	}
	if r := Build(st, res, "other"); len(r.Rows) != 0 || len(r.Tokens) != 0 {
		t.Errorf("filtered: %+v", r)
	}
}
