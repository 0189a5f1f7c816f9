package jsondoc

import (
	"encoding/json"
	"testing"
)

func TestDoc(t *testing.T) {
	type report struct {
		Zones []string `json:"zones"`
		Note  string   `json:"note"`
	}
	for _, c := range []struct {
		doc  Doc
		want string
	}{
		{New("hook-status", struct {
			Zones []string `json:"zones"`
		}{[]string{}}), `{"schema":"ods-keyguard/hook-status/1","zones":[]}`},
		{New("check", &report{Zones: []string{"a."}, Note: "<x>"}), `{"schema":"ods-keyguard/check/1","zones":["a."],"note":"\u003cx\u003e"}`},
		{New("empty", struct{}{}), `{"schema":"ods-keyguard/empty/1"}`},
	} {
		b, err := json.Marshal(c.doc)
		if err != nil || string(b) != c.want {
			t.Errorf("got %s, %v; want %s", b, err, c.want)
		}
	}
	if _, err := json.Marshal(New("list", []int{1})); err == nil {
		t.Error("a body that is no object was taken")
	}
}
