package hooks

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strings"
)

// Syslog logs the guard's events to syslog, tag ods-keyguard, at the
// facility conf.xml gives the OpenDNSSEC daemons, and to stderr.
type Syslog struct {
	w      *syslog.Writer
	stderr io.Writer
}

var facilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL, "daemon": syslog.LOG_DAEMON,
	"auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG, "lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS,
	"uucp": syslog.LOG_UUCP, "cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// SyslogSocketEnv names a unix datagram socket to log to instead of the
// system logger.
const SyslogSocketEnv = "ODS_KEYGUARD_SYSLOG"

// NewSyslog dials the system logger (or $ODS_KEYGUARD_SYSLOG) at facility
// (daemon when empty or unknown). Without a logger the lines still reach
// stderr.
func NewSyslog(facility string, stderr io.Writer) *Syslog {
	s := &Syslog{stderr: stderr}
	f, ok := facilities[strings.ToLower(facility)]
	if !ok {
		if facility != "" {
			fmt.Fprintf(stderr, "ods-keyguard: syslog facility %q unknown, logging to daemon\n", facility)
		}
		f = syslog.LOG_DAEMON
	}
	var err error
	if sock := os.Getenv(SyslogSocketEnv); sock != "" {
		s.w, err = syslog.Dial("unixgram", sock, f|syslog.LOG_INFO, "ods-keyguard")
	} else {
		s.w, err = syslog.New(f|syslog.LOG_INFO, "ods-keyguard")
	}
	if err != nil {
		s.w = nil
	}
	return s
}

func (s *Syslog) Info(msg string)    { s.log(msg, (*syslog.Writer).Info) }
func (s *Syslog) Warning(msg string) { s.log(msg, (*syslog.Writer).Warning) }
func (s *Syslog) Err(msg string)     { s.log(msg, (*syslog.Writer).Err) }

func (s *Syslog) log(msg string, at func(*syslog.Writer, string) error) {
	line := strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	if s.w != nil {
		at(s.w, line)
	}
	fmt.Fprintf(s.stderr, "ods-keyguard: %s\n", line)
}

// Close closes the connection to the logger.
func (s *Syslog) Close() {
	if s.w != nil {
		s.w.Close()
	}
}
