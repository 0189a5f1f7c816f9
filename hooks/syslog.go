package hooks

import (
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"strings"
	"time"
)

// Syslog logs the guard's events to syslog, tag ods-keyguard, at the
// facility conf.xml gives the OpenDNSSEC daemons, and to stderr.
//
// The standard library's log/syslog writes with no deadline: a logger that
// stopped reading (its socket's queue full) would block the hook, and the
// enforcer behind it. Each line here has writeTimeout; after one that did
// not go, the rest of the run logs to stderr only.
type Syslog struct {
	conn     net.Conn
	facility syslog.Priority
	stderr   io.Writer
	// quiet: lines go to the logger only, not stderr (a command that
	// prints the same on stdout); to stderr still when no logger takes them.
	quiet bool
}

// writeTimeout bounds one line's write to the logger.
const writeTimeout = 500 * time.Millisecond

var facilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL, "daemon": syslog.LOG_DAEMON,
	"auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG, "lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS,
	"uucp": syslog.LOG_UUCP, "cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// syslogSocketEnv names a unix datagram socket to log to instead of the
// system logger.
const syslogSocketEnv = "ODS_KEYGUARD_SYSLOG"

// syslogSockets are where the system logger listens, as log/syslog looks.
var syslogSockets = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// NewSyslog connects to the system logger (or $ODS_KEYGUARD_SYSLOG) at
// facility (daemon when empty or unknown). Without a logger the lines still
// reach stderr.
func NewSyslog(facility string, stderr io.Writer) *Syslog {
	s := &Syslog{stderr: stderr}
	f, ok := facilities[strings.ToLower(facility)]
	if !ok {
		if facility != "" {
			fmt.Fprintf(stderr, "ods-keyguard: syslog facility %q unknown, logging to daemon\n", facility)
		}
		f = syslog.LOG_DAEMON
	}
	s.facility = f
	paths := syslogSockets
	if sock := os.Getenv(syslogSocketEnv); sock != "" {
		paths = []string{sock}
	}
	for _, p := range paths {
		for _, network := range []string{"unixgram", "unix"} {
			if c, err := net.DialTimeout(network, p, writeTimeout); err == nil {
				s.conn = c
				return s
			}
		}
	}
	return s
}

func (s *Syslog) Info(msg string)    { s.log(msg, syslog.LOG_INFO) }
func (s *Syslog) Warning(msg string) { s.log(msg, syslog.LOG_WARNING) }
func (s *Syslog) Err(msg string)     { s.log(msg, syslog.LOG_ERR) }

func (s *Syslog) log(msg string, level syslog.Priority) {
	line := strings.Join(strings.Fields(msg), " ")
	if s.conn != nil {
		// RFC 3164 as the local logger takes it (what log/syslog writes).
		m := fmt.Sprintf("<%d>%s %s[%d]: %s\n", s.facility|level, time.Now().Format(time.Stamp), "ods-keyguard", os.Getpid(), line)
		s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := s.conn.Write([]byte(m)); err != nil {
			s.conn.Close()
			s.conn = nil
			fmt.Fprintf(s.stderr, "ods-keyguard: syslog: %v: logging to stderr only\n", err)
		}
	}
	if s.quiet && s.conn != nil {
		return
	}
	fmt.Fprintf(s.stderr, "ods-keyguard: %s\n", line)
}

// SyslogOnly is a logger that writes s's logger only, not stderr: for a
// command that prints one line per action on stdout already. With no
// logger connected the lines still reach stderr, so nothing is lost.
func (s *Syslog) SyslogOnly() Logger {
	return &quietSyslog{s}
}

type quietSyslog struct{ s *Syslog }

func (q *quietSyslog) Info(msg string)    { q.log(msg, syslog.LOG_INFO) }
func (q *quietSyslog) Warning(msg string) { q.log(msg, syslog.LOG_WARNING) }
func (q *quietSyslog) Err(msg string)     { q.log(msg, syslog.LOG_ERR) }

func (q *quietSyslog) log(msg string, level syslog.Priority) {
	q.s.quiet = true
	defer func() { q.s.quiet = false }()
	q.s.log(msg, level)
}

// Close closes the connection to the logger.
func (s *Syslog) Close() {
	if s.conn != nil {
		s.conn.Close()
	}
}
