package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// fileLock is the one flock in state_dir that serialises every writer of
// ceremonies and of the DS records' compaction. Hooks do not take it: they
// write to the spool.
type fileLock struct {
	f *os.File
}

const lockName = "lock"

// acquireFile takes d/lock, waiting up to wait for another holder. When it
// has to wait it says so once on waiting, naming the holder.
func acquireFile(ctx context.Context, d *statedir.Dir, wait time.Duration, waiting io.Writer) (*fileLock, error) {
	f, err := d.OpenFile(lockName, syscall.O_RDWR|syscall.O_CREAT, statedir.LockMode)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", unwrapPathKeep(err))
	}
	// The umask narrowed what O_CREAT asked for: the enforcer's user (in the
	// group) takes this lock too.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != statedir.LockMode {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Getuid() {
			f.Chmod(statedir.LockMode)
		}
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("state lock %s: %w", f.Name(), err)
		}
		if !told && waiting != nil {
			fmt.Fprintf(waiting, "ods-keyguard: waiting for the state lock %s, held by %s\n", f.Name(), holder(f))
			told = true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			h := holder(f)
			f.Close()
			return nil, fmt.Errorf("state lock %s: held by %s for over %s; try again when it is done", f.Name(), h, wait)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// holder names the process that holds the flock on f, from /proc/locks, or
// says that it cannot tell.
func holder(f *os.File) string {
	fi, err := f.Stat()
	if err != nil {
		return "another process (which one cannot be told)"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "another process (which one cannot be told)"
	}
	pid := lockHolder("/proc/locks", st.Dev, st.Ino)
	if pid <= 0 {
		return "another process (which one cannot be told: /proc/locks does not show it)"
	}
	return describePid(pid)
}

// lockHolder finds the pid that holds a FLOCK on the file (dev, ino) in a
// /proc/locks listing; waiters (" -> ") are skipped.
func lockHolder(path string, dev, ino uint64) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	major, minor := (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] == want {
			pid, _ := strconv.Atoi(fields[4])
			return pid
		}
	}
	return 0
}

// describePid names a process: "pid 1234 (ods-keyguard backup done)".
func describePid(pid int) string { return proc.Describe(pid) }

// unwrapPathKeep keeps our own "state file ..." errors, and strips the
// PathError of others down to path: reason.
func unwrapPathKeep(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// lockHolder names the live process that holds state_dir's lock, from
// /proc/locks, without opening the lock (a reader may not: it is 0600), or
// "" when nobody holds it. Only a holder running as root or as state_dir's
// owner counts: the trust model lets nobody else take it.
func (f *files) lockHolder(ctx context.Context) string {
	if f.d == nil {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Fstatat(f.d.Fd(), lockName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return ""
	}
	pid := lockHolder("/proc/locks", uint64(st.Dev), uint64(st.Ino))
	if pid <= 0 {
		return ""
	}
	var ps syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &ps); err != nil || !f.d.Trusted(ps.Uid) {
		return ""
	}
	return describePid(pid)
}
