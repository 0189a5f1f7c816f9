// Package mysqlx opens MySQL and MariaDB servers for the enforcer's
// database and the shared ledger: every call under the caller's deadline,
// the password never in a DSN, a message or a log line, and the driver's
// errors turned into one plain line each.
package mysqlx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

func init() {
	// The driver logs some errors itself, on stderr, beside the ones it
	// returns: the caller reports those, once.
	mysql.SetLogger(log.New(io.Discard, "", 0))
}

// DefaultSocket is where Debian's MariaDB and MySQL listen when the host is
// "localhost", as libmysqlclient does.
const DefaultSocket = "/run/mysqld/mysqld.sock"

// Server is where to connect and as whom.
type Server struct {
	Host     string // "localhost" means the unix socket; a path too
	Port     int    // 0: 3306
	Socket   string // with Host "localhost": the socket (default DefaultSocket)
	User     string
	Password secret.Value
	Database string
}

// Addr names the server for messages: host:port or the socket.
func (s Server) Addr() string {
	_, addr := s.dial()
	return addr
}

func (s Server) dial() (network, addr string) {
	switch {
	case strings.HasPrefix(s.Host, "/"):
		return "unix", s.Host
	case s.Host == "localhost" || s.Host == "":
		if s.Socket != "" {
			return "unix", s.Socket
		}
		return "unix", DefaultSocket
	}
	port := s.Port
	if port == 0 {
		port = 3306
	}
	return "tcp", net.JoinHostPort(s.Host, strconv.Itoa(port))
}

// String names the server and database for messages, never the password:
// mysql://user@host:port/database.
func (s Server) String() string {
	return fmt.Sprintf("mysql://%s@%s/%s", s.User, s.Addr(), s.Database)
}

// ParseDSN reads a DSN in the driver's form (user@tcp(host:port)/db or
// user@unix(/path)/db). A password inside it is refused without echoing
// the DSN: it belongs in a password file.
func ParseDSN(dsn string) (Server, error) {
	at := strings.LastIndex(dsn, "@")
	if at >= 0 && strings.Contains(dsn[:at], ":") {
		return Server{}, errors.New("dsn holds a password: give the user name only, and the password in password_file")
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return Server{}, fmt.Errorf("dsn %q: %v", dsn, err)
	}
	s := Server{User: cfg.User, Database: cfg.DBName}
	switch cfg.Net {
	case "unix":
		s.Host = cfg.Addr
	case "tcp", "":
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return Server{}, fmt.Errorf("dsn %q: address %q: %v", dsn, cfg.Addr, err)
		}
		s.Host = host
		if s.Port, err = strconv.Atoi(port); err != nil {
			return Server{}, fmt.Errorf("dsn %q: port %q is not a number", dsn, port)
		}
	default:
		return Server{}, fmt.Errorf("dsn %q: network %q: use tcp(HOST:PORT) or unix(PATH)", dsn, cfg.Net)
	}
	if s.User == "" || s.Database == "" {
		return Server{}, fmt.Errorf("dsn %q: needs a user and a database: user@tcp(host:3306)/database", dsn)
	}
	return s, nil
}

// Open returns a pool for s. Nothing is dialled until the first call,
// which runs under its context's deadline (the dial included). vars are
// name, value pairs of session variables every connection sets
// (wsrep_sync_wait on a Galera node).
func Open(s Server, vars ...string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName = s.User, s.Password.Reveal(), s.Database
	cfg.Net, cfg.Addr = s.dial()
	cfg.Timeout = 30 * time.Second // the caller's deadline comes first
	cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Minute, 5*time.Minute
	cfg.ParseTime = false
	cfg.InterpolateParams = false
	cfg.Params = map[string]string{"sql_mode": "'STRICT_ALL_TABLES'"}
	for i := 0; i+1 < len(vars); i += 2 {
		cfg.Params[vars[i]] = vars[i+1]
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", s, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxIdleConns(2)
	db.SetConnMaxLifetime(5 * time.Minute)
	return db, nil
}

// Error numbers the messages below name.
const (
	ErAccessDenied     = 1045
	ErDBAccessDenied   = 1044
	ErBadDB            = 1049
	ErNoSuchTable      = 1146
	ErBadField         = 1054
	ErDupEntry         = 1062
	ErLockWaitTimeout  = 1205
	ErTableAccessDeny  = 1142
	ErLockDeadlock     = 1213
	ErOptionPreventsRO = 1290
	ErCantReadOnly     = 1792 // a write in a read-only transaction
)

// Number is the server's error number of err, or 0.
func Number(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Message is the server's own message of err, or err's text.
func Message(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Message
	}
	return err.Error()
}

// Lost reports whether err is a connection that went away: the server
// restarted, a Galera node left, a fail-over moved the address.
func Lost(err error) bool {
	if err == nil {
		return false
	}
	switch Number(err) {
	case 2006, 2013, 1927: // gone away, lost during query, connection killed
		return true
	case 1047: // WSREP has not yet prepared node for application use
		return true
	}
	return errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// Explain says in plain words what went wrong talking to s: server down,
// wrong password, no database, no time. The password is never in it.
func Explain(s Server, err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case ErAccessDenied:
			return fmt.Sprintf("access denied for user %q (wrong password, or no such user from this host)", s.User)
		case ErDBAccessDenied:
			return fmt.Sprintf("user %q may not use database %q (a GRANT is missing)", s.User, s.Database)
		case ErBadDB:
			return fmt.Sprintf("no database %q on the server", s.Database)
		case ErTableAccessDeny:
			return fmt.Sprintf("user %q lacks a privilege: %s", s.User, me.Message)
		case ErLockWaitTimeout:
			return "a row lock was held longer than the server's lock wait timeout (another host was writing)"
		case ErLockDeadlock:
			return "another host wrote first (a deadlock, or a Galera certification conflict: server error 1213)"
		}
		return fmt.Sprintf("server error %d: %s", me.Number, me.Message)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "server down: connection refused"
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT):
		return "server down: no socket there"
	case errors.Is(err, syscall.EACCES):
		return "permission denied on the socket"
	case errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return fmt.Sprintf("cannot connect: no such host %q", de.Name)
		}
		return fmt.Sprintf("cannot connect: cannot resolve %q: %s", de.Name, de.Err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer in time"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Sprintf("cannot connect: %v", oe.Err)
	}
	return err.Error()
}
