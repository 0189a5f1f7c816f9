//go:build failpoint

package failpoint

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// Env names the step to die (or pause) at; PidEnv the file a paused
// process writes its pid to, and waits to see removed.
const (
	Env    = "ODS_KEYGUARD_FAILPOINT"
	PidEnv = "ODS_KEYGUARD_FAILPOINT_PIDFILE"
)

// Enabled says that this binary was built with the failpoints.
const Enabled = true

// Hit kills this process with SIGKILL when $ODS_KEYGUARD_FAILPOINT is
// point, or pauses it there when it is point + ":pause".
func Hit(point string) {
	switch os.Getenv(Env) {
	case point:
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not caught: never returns
	case point + ":pause":
		f := os.Getenv(PidEnv)
		if f == "" {
			return
		}
		if err := os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return
		}
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(f); err != nil {
				return
			}
		}
	}
}
