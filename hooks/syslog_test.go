package hooks

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Lines reach the logger as RFC 3164 at the facility and level asked.
func TestSyslogLine(t *testing.T) {
	sock, conn := listenSyslog(t)
	t.Setenv(syslogSocketEnv, sock)
	var stderr strings.Builder
	s := NewSyslog("local0", &stderr)
	defer s.Close()
	s.Warning("withheld zone a.example\nkey tag 1")
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// local0 (16<<3) | warning (4) = 132
	if re := regexp.MustCompile(`^<132>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d ods-keyguard\[\d+\]: withheld zone a.example key tag 1\n$`); !re.Match(buf[:n]) {
		t.Errorf("logged %q", buf[:n])
	}
	if stderr.String() != "ods-keyguard: withheld zone a.example key tag 1\n" {
		t.Errorf("stderr %q", stderr.String())
	}
}

// A logger that stops reading cannot stall the hook: a line that does not
// go within writeTimeout ends syslog for the run, and stderr carries on.
func TestSyslogStuck(t *testing.T) {
	sock, _ := listenSyslog(t) // never read
	t.Setenv(syslogSocketEnv, sock)
	s := NewSyslog("daemon", io.Discard)
	defer s.Close()
	done := make(chan int, 1)
	go func() {
		n := 0
		for s.conn != nil && n < 1_000_000 {
			s.Info("a line for a logger that reads nothing")
			n++
		}
		done <- n
	}()
	select {
	case n := <-done:
		if s.conn != nil {
			t.Fatalf("%d lines went to a logger that reads nothing", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logging to a stuck logger did not return")
	}
	var stderr strings.Builder
	s.stderr = &stderr
	s.Err("still said")
	if stderr.String() != "ods-keyguard: still said\n" {
		t.Errorf("stderr %q", stderr.String())
	}
}

func listenSyslog(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); os.Remove(sock) })
	return sock, conn
}
