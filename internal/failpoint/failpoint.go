// Package failpoint lets a test kill ods-keyguard at a named step, as a
// crash or kill -9 would: $ODS_KEYGUARD_FAILPOINT names the step. Unset, a
// failpoint does nothing.
package failpoint

import (
	"os"
	"syscall"
)

// Env names the step to die at.
const Env = "ODS_KEYGUARD_FAILPOINT"

// Hit kills this process with SIGKILL when $ODS_KEYGUARD_FAILPOINT is point.
func Hit(point string) {
	if os.Getenv(Env) == point {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not caught: never returns
	}
}
