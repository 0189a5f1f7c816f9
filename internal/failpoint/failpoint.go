// Package failpoint lets a test kill ods-keyguard at a named step, as a
// crash or kill -9 would, or stop it there, as a slow step would:
// $ODS_KEYGUARD_FAILPOINT names the step ("STEP" kills, "STEP:stop" stops
// the process with SIGSTOP after writing its pid to
// $ODS_KEYGUARD_FAILPOINT_PIDFILE, for the test to inspect it mid-step and
// then continue or kill it). Unset, a failpoint does nothing.
package failpoint

import (
	"os"
	"strconv"
	"syscall"
)

// Env names the step to die (or stop) at; PidEnv the file that gets the
// pid of a stopped process.
const (
	Env    = "ODS_KEYGUARD_FAILPOINT"
	PidEnv = "ODS_KEYGUARD_FAILPOINT_PIDFILE"
)

// Hit kills this process with SIGKILL when $ODS_KEYGUARD_FAILPOINT is
// point, or stops it with SIGSTOP when it is point + ":stop".
func Hit(point string) {
	switch os.Getenv(Env) {
	case point:
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not caught: never returns
	case point + ":stop":
		if f := os.Getenv(PidEnv); f != "" {
			os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
		}
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
}
