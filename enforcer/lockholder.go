package enforcer

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/ods-keyguard/ods-keyguard/internal/proc"
)

// Who holds SQLite's lock on kasp.db is read from /proc/locks (SQLite
// takes POSIX record locks on the file), never assumed: another program
// (an sqlite3 shell, a backup) holds it as well as the enforcer does.

// LockHolders names the processes holding a POSIX lock on path: "the
// enforcer (pid 123)" or "pid 456 (sqlite3 kasp.db)"; none when it cannot
// be told.
func LockHolders(path string) []string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer f.Close()
	dev := uint64(st.Dev)
	major, minor := (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	seen := map[int]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || fields[1] != "POSIX" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid <= 0 || seen[pid] || pid == os.Getpid() {
			continue
		}
		seen[pid] = true
		out = append(out, describeProcess(pid))
	}
	return out
}

// describeProcess names a process: "the enforcer (pid 123)" for
// ods-enforcerd, else "pid 456 (its command line)".
func describeProcess(pid int) string {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if strings.TrimSpace(string(comm)) == "ods-enforcerd" {
		return fmt.Sprintf("the enforcer (ods-enforcerd pid %d)", pid)
	}
	return proc.Describe(pid)
}

// lockHolder adds to a "database is locked" error who holds the lock, where
// that can be told.
func lockHolder(ds Datastore, err error) error {
	if ds.SQLite == "" || !locked(err) {
		return err
	}
	if h := LockHolders(ds.SQLite); len(h) > 0 {
		return fmt.Errorf("%w: locked by %s", err, strings.Join(h, " and "))
	}
	return fmt.Errorf("%w: locked by another process (which one cannot be told)", err)
}
