package proc

import (
	"fmt"
	"os"
	"strings"
)

// Describe names a running process by its command line, cut short:
// "pid 1234 (ods-keyguard backup done)", or "pid 1234" when its command
// line cannot be read.
func Describe(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return fmt.Sprintf("pid %d", pid)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	args[0] = args[0][strings.LastIndex(args[0], "/")+1:]
	cmd := strings.Join(args, " ")
	if len(cmd) > 80 {
		cmd = cmd[:80] + "..."
	}
	return fmt.Sprintf("pid %d (%s)", pid, cmd)
}
