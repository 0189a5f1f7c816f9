package main

// Script commands about monitoring: the plugin under a real Nagios Core.

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// nagios CHECK_COMMAND: run CHECK_COMMAND (check_ods_keyguard, or
// check_ods_keyguard_spare!W!C), as packaging/nagios-ods-keyguard.cfg
// defines it, as a service check of a sandboxed Nagios Core; print what
// Nagios recorded: state=N, output=..., perfdata=..., and the further
// lines after long:.
func cmdNagios(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: nagios CHECK_COMMAND")
	}
	bin := installSelf(ts)
	var env []string
	for _, k := range []string{"ODS_KEYGUARD_CONFIG", "SOFTHSM2_CONF"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	env = append(env, "PATH="+bin+":"+ts.Getenv("PATH"), "HOME=/")
	commands, err := filepath.Abs("packaging/nagios-ods-keyguard.cfg")
	ts.Check(err)
	r, err := sandbox.RunNagios(ts.MkAbs("nagios"), commands, filepath.Join(bin, "check_ods_keyguard"), args[0], env, 60*time.Second)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "state=%d\noutput=%s\nperfdata=%s\nlong:\n%s\n", r.State, r.Output, r.Perfdata, r.Long)
}
