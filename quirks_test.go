package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/p11quirks"
)

// quirks [KNOB=VALUE ...]: put the quirks module (internal/lab/p11quirks)
// in front of $MODULE, the first time (before enforcer start: the
// enforcer loads it too, without knobs), and write the knobs, one a line,
// to $WORK/quirks.conf, which the module reads at each C_Initialize where
// P11QUIRKS_CONF names it: a script gives that to ods-keyguard's tokens
// (env in keyguard.toml), never to the enforcer. No knobs: a plain token.
func cmdQuirks(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: quirks [KNOB=VALUE ...]")
	}
	if ts.Getenv("P11QUIRKS_MODULE") == "" {
		so, err := p11quirks.Build()
		ts.Check(err)
		ts.Setenv("P11QUIRKS_MODULE", ts.Getenv("MODULE"))
		ts.Setenv("MODULE", so)
		ts.Setenv("QUIRKS", filepath.Join(ts.Getenv("WORK"), "quirks.conf"))
	}
	var b strings.Builder
	for _, a := range args {
		if !strings.Contains(a, "=") {
			ts.Fatalf("quirks: %q is not KNOB=VALUE", a)
		}
		b.WriteString(a + "\n")
	}
	ts.Check(os.WriteFile(ts.Getenv("QUIRKS"), []byte(b.String()), 0o644))
}
