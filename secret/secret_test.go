package secret

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestNeverPrints(t *testing.T) {
	s := Value("4321")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q %x %X", s, s, s, s, s, s, s)} {
		if strings.Contains(got, "4321") || strings.Contains(got, "34333231") {
			t.Errorf("printed %q", got)
		}
	}
	holder := struct {
		Name string
		PIN  Value
	}{"x", s}
	if got := fmt.Sprintf("%v %+v %#v", holder, holder, holder); strings.Contains(got, "4321") {
		t.Errorf("struct printed %q", got)
	}
	b, err := json.Marshal(holder)
	if err != nil || strings.Contains(string(b), "4321") {
		t.Errorf("JSON %s, %v", b, err)
	}
	if s.Reveal() != "4321" || s.Empty() || !Value("").Empty() {
		t.Error("Reveal or Empty wrong")
	}
}
