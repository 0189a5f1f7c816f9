package recovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
)

// Whether an enforcer uses a database is established, never assumed from a
// socket that does not answer: a daemon stopped with SIGSTOP, one whose
// socket was moved, one started with a relative -c or by systemd without
// -c all run without answering there. Every ods-enforcerd process is
// looked at: the conf.xml it reads (its -c resolved against its own root
// and working directory, else the compiled-in one), the database that
// conf.xml names, the files it holds open; and the pid in the pid file of
// this conf.xml.

// Target is the enforcer installation whose database would be written.
type Target struct {
	Conf      string // conf.xml
	Socket    string // its <SocketFile>
	PidFile   string // its <PidFile>
	Datastore enforcer.Datastore
	// ReadConf reads another conf.xml: its datastore (an error when it is
	// not one).
	ReadConf func(path string) (enforcer.Datastore, error)
	// Proc is /proc (a test's own folder otherwise).
	Proc string
}

// CannotTellError is an ods-enforcerd process that could not be looked
// at: whether it uses the database cannot be told.
type CannotTellError struct{ Why string }

func (e *CannotTellError) Error() string { return e.Why }

// Running says how an enforcer uses t's database ("" when none does), or
// that it cannot tell (a *CannotTellError): the caller refuses either way.
func (t Target) Running() (string, error) {
	proc := t.Proc
	if proc == "" {
		proc = "/proc"
	}
	if t.Socket != "" {
		if c, err := net.DialTimeout("unix", t.Socket, time.Second); err == nil {
			c.Close()
			return "its socket " + t.Socket + " answers", nil
		}
	}
	if pid := readPid(t.PidFile); pid > 0 && comm(proc, pid) == "ods-enforcerd" {
		return fmt.Sprintf("process %d, named in its pid file %s, is ods-enforcerd%s", pid, t.PidFile, stopped(proc, pid)), nil
	}
	dirs, _ := filepath.Glob(filepath.Join(proc, "[0-9]*"))
	var unknown []string
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || comm(proc, pid) != "ods-enforcerd" {
			continue
		}
		how, err := t.uses(proc, pid)
		switch {
		case how != "":
			return fmt.Sprintf("process %d (ods-enforcerd%s) %s", pid, stopped(proc, pid), how), nil
		case err != nil && !gone(proc, pid):
			unknown = append(unknown, fmt.Sprintf("process %d (ods-enforcerd): %v", pid, err))
		}
	}
	if len(unknown) > 0 {
		return "", &CannotTellError{strings.Join(unknown, "; ") + ": whether it uses " + t.Datastore.String() + " cannot be told (run as root, or stop it)"}
	}
	return "", nil
}

// uses says how process pid uses t's database, "" when it does not, or an
// error when it cannot be told.
func (t Target) uses(proc string, pid int) (string, error) {
	root := filepath.Join(proc, strconv.Itoa(pid), "root")
	confs, err := t.confsOf(proc, pid)
	if err != nil {
		return "", err
	}
	resolved := false
	for _, c := range confs {
		inside := filepath.Join(root, c)
		if sameFile(inside, t.Conf) {
			return "runs with " + t.Conf, nil
		}
		ds, err := t.ReadConf(inside)
		if err != nil {
			continue
		}
		resolved = true
		switch {
		case ds.SQLite != "" && t.Datastore.SQLite != "" && sameFile(filepath.Join(root, ds.SQLite), t.Datastore.SQLite):
			return fmt.Sprintf("runs with %s, which names the database %s", c, t.Datastore.SQLite), nil
		case ds.MySQL != nil && t.Datastore.MySQL != nil && sameMySQL(ds.MySQL, t.Datastore.MySQL):
			return fmt.Sprintf("runs with %s, which names the database %s", c, t.Datastore), nil
		}
	}
	if t.Datastore.SQLite != "" {
		// ods-enforcerd keeps kasp.db open while it runs (stopped too):
		// its open files tell, whatever its conf.xml.
		open, err := holds(proc, pid, t.Datastore.SQLite)
		switch {
		case open:
			return "has " + t.Datastore.SQLite + " open", nil
		case err == nil:
			return "", nil
		case !resolved:
			return "", err
		}
	}
	if !resolved {
		return "", fmt.Errorf("its conf.xml (%s) cannot be read", strings.Join(confs, " or "))
	}
	return "", nil
}

// confsOf lists where the conf.xml of process pid may be, in its own
// root: its -c (relative: against its working directory now, and the one
// it was started in, $PWD), or the compiled-in one.
func (t Target) confsOf(proc string, pid int) ([]string, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("its command line cannot be read (%v)", errors.Unwrap(err))
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	conf := "/etc/opendnssec/conf.xml"
	for i, a := range args {
		switch {
		case (a == "-c" || a == "--config") && i+1 < len(args):
			conf = args[i+1]
		case strings.HasPrefix(a, "--config="):
			conf = strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-c") && len(a) > 2:
			conf = a[2:]
		}
	}
	if filepath.IsAbs(conf) {
		return []string{conf}, nil
	}
	var out []string
	if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil {
		out = append(out, filepath.Join(cwd, conf))
	}
	if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
		for _, kv := range strings.Split(string(env), "\x00") {
			if pwd, ok := strings.CutPrefix(kv, "PWD="); ok && filepath.IsAbs(pwd) {
				out = append(out, filepath.Join(pwd, conf))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("its -c %s is relative, and its working directory cannot be read", conf)
	}
	return out, nil
}

// holds says whether process pid has path (or its journal) open.
func holds(proc string, pid int, path string) (bool, error) {
	var want []os.FileInfo
	for _, p := range []string{path, path + "-journal", path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			want = append(want, fi)
		}
	}
	fds, err := os.ReadDir(filepath.Join(proc, strconv.Itoa(pid), "fd"))
	if err != nil {
		return false, fmt.Errorf("its open files cannot be read (%v)", errors.Unwrap(err))
	}
	for _, fd := range fds {
		fi, err := os.Stat(filepath.Join(proc, strconv.Itoa(pid), "fd", fd.Name()))
		if err != nil {
			continue
		}
		for _, w := range want {
			if os.SameFile(fi, w) {
				return true, nil
			}
		}
	}
	return false, nil
}

func readPid(path string) int {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	return pid
}

func comm(proc string, pid int) string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stopped says ", stopped" for a process stopped by a signal: it still
// holds the database, and runs on with SIGCONT.
func stopped(proc string, pid int) string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
		return ", stopped (SIGSTOP): it goes on when continued"
	}
	return ""
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

func sameMySQL(a, b *enforcer.MySQL) bool {
	port := func(p int) int {
		if p == 0 {
			return 3306
		}
		return p
	}
	local := func(h string) string {
		if h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return "local"
		}
		return strings.ToLower(h)
	}
	return local(a.Host) == local(b.Host) && port(a.Port) == port(b.Port) && a.Database == b.Database
}

// gone says whether process pid ended meanwhile.
func gone(proc string, pid int) bool {
	_, err := os.Stat(filepath.Join(proc, strconv.Itoa(pid)))
	return errors.Is(err, os.ErrNotExist)
}
