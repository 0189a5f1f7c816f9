package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// TestDemo runs make demo's program on the release build and holds it to
// what the README promises of it: the zone's keys unbacked and check
// CRITICAL before the ceremony, the ceremony confirmed on the backup
// token, check OK after it; and as root, the signer's first version held
// by the publish gate and published by backup done.
func TestDemo(t *testing.T) {
	sandbox.NeedTools(t, "softhsm2-util", "ods-enforcerd", "ods-enforcer")
	bin := filepath.Join(t.TempDir(), "ods-keyguard")
	build := exec.Command("go", "build", "-o", bin, "github.com/ods-keyguard/ods-keyguard")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	var out bytes.Buffer
	if err := run(&out, bin, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	want := []string{
		`(?m)^KEYGUARD CRITICAL - 2 keys in use without a confirmed backup`,
		`(?m)^repository "SoftHSM": ceremony \S+ confirmed: 4 keys backed up, verified on backup token "vault"`,
		`(?m)^KEYGUARD OK - 4 keys, 2 pools: `,
	}
	if ok, _ := canSign(); ok {
		want = append(want,
			`(?m)^example.com: nothing served by the gate; serial [0-9]+ held$`,
			`(?m)^== what the name servers read \(.*\): nothing yet$`,
			`(?m)^released: publish zone example.com serial [0-9]+$`,
			`(?m)^example.com: serial [0-9]+ served since `,
			`(?m)^== what the name servers read \(.*\): .*/example.com.zone$`)
	} else if sandbox.Strict && os.Geteuid() == 0 {
		t.Errorf("the demo runs without the signer in CI")
	}
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("no match for %s in:\n%s", re, out.String())
		}
	}
}
