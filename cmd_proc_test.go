package main

// Script commands about processes and the host: a syslog to read, children
// to wait for or kill at a failpoint, another user, a full disk.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"
)

// logged PATTERN: wait (up to 10 s) until a line of $WORK/syslog.txt
// matches PATTERN, as grep would: the syslogd command writes what it
// receives a moment after the sender is gone. ! logged PATTERN: no line
// matches, after that moment.
func cmdLogged(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: logged PATTERN")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	wait := 10 * time.Second
	if neg {
		wait = 300 * time.Millisecond
	}
	var data []byte
	for end := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		data, _ = os.ReadFile(ts.MkAbs("syslog.txt"))
		if re.Match(data) || time.Now().After(end) {
			break
		}
	}
	switch found := re.Match(data); {
	case found && neg:
		ts.Fatalf("syslog.txt has a line matching %q", args[0])
	case !found && !neg:
		ts.Logf("[syslog.txt]\n%s", data)
		ts.Fatalf("no line of syslog.txt matches %q", args[0])
	}
}

// syslogd: listen on a unix datagram socket, set $ODS_KEYGUARD_SYSLOG to it,
// and append every message received to $WORK/syslog.txt. syslogd -stuck: a
// logger that reads nothing, its queue full before anyone logs.
func cmdSyslogd(ts *testscript.TestScript, neg bool, args []string) {
	stuck := len(args) == 1 && args[0] == "-stuck"
	if neg || (len(args) != 0 && !stuck) {
		ts.Fatalf("usage: syslogd [-stuck]")
	}
	dir, err := os.MkdirTemp("", "slog") // a socket path holds 107 bytes at most
	ts.Check(err)
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	ts.Check(err)
	if stuck {
		// A logger that reads nothing, its queue already full.
		w, err := net.Dial("unixgram", sock)
		ts.Check(err)
		for {
			w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := w.Write([]byte("<30>filler")); err != nil {
				break
			}
		}
		ts.Defer(func() {
			w.Close()
			conn.Close()
			os.RemoveAll(dir)
		})
		ts.Setenv("ODS_KEYGUARD_SYSLOG", sock)
		return
	}
	out, err := os.OpenFile(ts.MkAbs("syslog.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	ts.Check(err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*1024)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := strings.TrimRight(string(buf[:n]), "\n")
			out.WriteString(msg + "\n")
		}
	}()
	ts.Defer(func() {
		conn.Close()
		<-done
		out.Close()
		os.RemoveAll(dir)
	})
	ts.Setenv("ODS_KEYGUARD_SYSLOG", sock)
}

// cpdir SRC DST: copy a folder's contents into DST, made if need be (a SoftHSMv2 backup is a copy of its tokens).
func cmdCpdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cpdir SRC DST")
	}
	ts.Check(os.MkdirAll(ts.MkAbs(args[1]), 0o700))
	out, err := exec.Command("cp", "-a", ts.MkAbs(args[0])+"/.", ts.MkAbs(args[1])).CombinedOutput()
	if err != nil {
		ts.Fatalf("cpdir: %v: %s", err, out)
	}
}

// noproc VAR=VALUE: no process runs with VAR=VALUE in its environment (a
// reader or forward command that should have been killed and reaped).
func cmdNoProc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: noproc VAR=VALUE")
	}
	want := []byte(args[0] + "\x00")
	for i := 0; ; i++ {
		var found []string
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			env, err := os.ReadFile(filepath.Join(d, "environ"))
			stat, _ := os.ReadFile(filepath.Join(d, "stat"))
			if err == nil && bytes.Contains(env, want) && !bytes.Contains(stat, []byte(") Z ")) {
				found = append(found, filepath.Base(d))
			}
		}
		if len(found) == 0 {
			return
		}
		if i == 3 {
			ts.Fatalf("processes still running with %s: %v", args[0], found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tmpfs DIR SIZE: mount a tmpfs of SIZE (such as 64k) on DIR, unmounted at
// the end: a disk that fills up for real. It needs root, which CI is.
func cmdTmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: tmpfs DIR SIZE")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+args[1], "tmpfs", dir).CombinedOutput(); err != nil {
		ts.Fatalf("tmpfs: mount (needs root): %v: %s", err, out)
	}
	ts.Defer(func() { exec.Command("umount", "-l", dir).Run() })
}

// killat MILLIS prog args...: run prog and kill it with SIGKILL after MILLIS
// milliseconds if it is still running; its exit status does not matter. A
// crash at a moment nobody chose.
func cmdKillAt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: killat MILLIS prog [args...]")
	}
	ms, err := strconv.Atoi(args[0])
	ts.Check(err)
	cmd := scriptCommand(ts, args[1], args[2:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ts.Check(cmd.Start())
	timer := time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { cmd.Process.Kill() })
	cmd.Wait()
	timer.Stop()
	fmt.Fprint(ts.Stdout(), out.String())
}

// runas UID:GID[:GROUP,...] N prog args...: run prog as that user, with
// those supplementary groups (numbers: no account is made), which must exit
// with status N. ods-keyguard is run from a copy in $WORK/bin that any user
// may execute. Needs root.
func cmdRunAs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: runas UID:GID[:GROUP,...] N prog [args...]")
	}
	ids := strings.Split(args[0], ":")
	num := func(s string) uint32 {
		n, err := strconv.ParseUint(s, 10, 32)
		ts.Check(err)
		return uint32(n)
	}
	cred := &syscall.Credential{Uid: num(ids[0]), Gid: num(ids[1])}
	if len(ids) > 2 {
		for _, g := range strings.Split(ids[2], ",") {
			cred.Groups = append(cred.Groups, num(g))
		}
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	bin := installSelf(ts)
	cmd := scriptCommand(ts, args[2], args[3:]...)
	cmd.Env = append(cmd.Env, "PATH="+bin+":"+ts.Getenv("PATH"), "HOME=/")
	if args[2] == "ods-keyguard" || args[2] == "check_ods_keyguard" {
		cmd.Path = filepath.Join(bin, args[2])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	ts.Stdout().Write(stdout.Bytes())
	ts.Stderr().Write(stderr.Bytes())
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("runas: %v", err)
	}
	if got != want {
		ts.Fatalf("%s as %s exited %d, want %d", args[2], args[0], got, want)
	}
}

// installSelf copies the test binary to $WORK/bin as ods-keyguard, with
// check_ods_keyguard linked to it, where any user may run it, and returns
// the folder.
func installSelf(ts *testscript.TestScript) string {
	bin := ts.MkAbs("bin")
	if _, err := os.Stat(filepath.Join(bin, "ods-keyguard")); err == nil {
		return bin
	}
	self, err := os.Executable()
	ts.Check(err)
	data, err := os.ReadFile(self)
	ts.Check(err)
	ts.Check(os.MkdirAll(bin, 0o755))
	ts.Check(os.WriteFile(filepath.Join(bin, "ods-keyguard"), data, 0o755))
	ts.Check(os.Symlink("ods-keyguard", filepath.Join(bin, "check_ods_keyguard")))
	for dir := ts.Getenv("WORK"); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o001 == 0 {
			ts.Check(os.Chmod(dir, fi.Mode().Perm()|0o011))
		}
	}
	return bin
}

// killStrays kills every process whose working folder is in dir (a
// script's $WORK), with SIGKILL, and says which: a script leaves nothing
// running behind it, whether it passed or failed.
func killStrays(t testscript.T, dir string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		t.Log(fmt.Sprintf("killed a process the script left behind: %d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")))
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
