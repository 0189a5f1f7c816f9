package sandbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/secret"
	_ "modernc.org/sqlite"
)

// MariaDB is a sandboxed MariaDB server (mariadb-server from Debian): its
// own data folder, on 127.0.0.1 and a free port, with its own socket and
// pid file. Root reaches it through the socket (unix_socket
// authentication); the databases it serves get users with passwords.
type MariaDB struct {
	Dir    string
	Socket string
	Port   int
	cmd    *exec.Cmd
	done   chan error
}

// StartMariaDB makes a data folder in dir with mariadb-install-db and
// starts mariadbd on it, waiting until it answers.
func StartMariaDB(dir string) (*MariaDB, error) {
	data, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	for _, d := range []string{data, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	m := &MariaDB{Dir: dir, Socket: filepath.Join(dir, "mysqld.sock")}
	// The server runs as the user the tests run as.
	user := "root"
	if os.Getuid() != 0 {
		user = strconv.Itoa(os.Getuid())
	}
	// A tmpdir of its own: installs running at once collide in /tmp.
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--tmpdir="+tmp, "--user="+user,
		"--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve")
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %v: %s", err, errorLines(string(out)))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m.Port = port
	log := filepath.Join(dir, "mariadbd.log")
	m.cmd = exec.Command("mariadbd", "--no-defaults", "--datadir="+data, "--tmpdir="+tmp, "--user="+user,
		"--bind-address=127.0.0.1", "--port="+strconv.Itoa(port), "--socket="+m.Socket,
		"--pid-file="+filepath.Join(dir, "mariadbd.pid"), "--log-error="+log,
		"--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--max-connections=500",
		// Lock waits end quickly: a test of a held lock must not wait 50 s.
		"--innodb-lock-wait-timeout=5")
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("mariadbd: %w", err)
	}
	m.done = make(chan error, 1)
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-m.done:
			out, _ := os.ReadFile(log)
			return nil, fmt.Errorf("mariadbd exited at start (%v): %s", err, tail(string(out)))
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := m.Root("SELECT 1"); err == nil {
			return m, nil
		}
	}
	m.Stop()
	out, _ := os.ReadFile(log)
	return nil, fmt.Errorf("mariadbd did not answer in 60 s: %s", tail(string(out)))
}

// errorLines keeps the lines of out that say ERROR, or its tail.
func errorLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ERROR") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return tail(out)
	}
	return strings.Join(keep, " | ")
}

// Root runs SQL as the server's root through the socket, with the mariadb
// client, and returns its tab-separated output without headers.
func (m *MariaDB) Root(sql string, db ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--no-defaults", "--socket=" + m.Socket, "--user=root", "--batch", "--skip-column-names"}
	args = append(args, db...)
	cmd := exec.CommandContext(ctx, "mariadb", args...)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("mariadb: %s", strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("mariadb: %w", err)
	}
	return string(out), nil
}

// Database is one database on the sandboxed server, with a user of its own.
type Database struct {
	Server   *MariaDB
	Name     string
	User     string
	Password string
}

// DSN is the database in the driver's form, without the password.
func (d *Database) DSN() string {
	return fmt.Sprintf("%s@tcp(127.0.0.1:%d)/%s", d.User, d.Server.Port, d.Name)
}

// NewDatabase makes a database and a user with all rights on it only.
// prefix names both; a random suffix keeps scripts apart on one server.
func (m *MariaDB) NewDatabase(prefix string) (*Database, error) {
	var r [4]byte
	rand.Read(r[:])
	suffix := hex.EncodeToString(r[:])
	d := &Database{Server: m, Name: prefix + "_" + suffix, User: prefix + "_" + suffix, Password: "pw-" + suffix}
	_, err := m.Root(fmt.Sprintf("CREATE DATABASE `%s`;\nCREATE USER '%s'@'%%' IDENTIFIED BY '%s';\nGRANT ALL ON `%s`.* TO '%s'@'%%';\n",
		d.Name, d.User, d.Password, d.Name, d.User))
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Drop removes the database and its user.
func (d *Database) Drop() error {
	_, err := d.Server.Root(fmt.Sprintf("DROP DATABASE IF EXISTS `%s`;\nDROP USER IF EXISTS '%s'@'%%';\n", d.Name, d.User))
	return err
}

// Query runs SQL on the database as root and returns the output.
func (d *Database) Query(sql string) (string, error) { return d.Server.Root(sql, d.Name) }

// Stop stops the server and waits for it.
func (m *MariaDB) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	stopDaemon(m.cmd.Process.Pid, true, m.done, 20*time.Second)
	m.cmd = nil
}

var shared struct {
	once sync.Once
	db   *MariaDB
	dir  string
	err  error
}

// SharedMariaDB is one server for the whole test process, started on first
// use; StopShared stops it. Each script takes databases of its own on it.
func SharedMariaDB() (*MariaDB, error) {
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "keyguard-mariadb")
		if shared.err != nil {
			return
		}
		shared.db, shared.err = StartMariaDB(shared.dir)
	})
	return shared.db, shared.err
}

// StopShared stops the shared server, if it was started, and removes its
// folder.
func StopShared() {
	if shared.db != nil {
		shared.db.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

var mysqlEnforcer struct {
	once sync.Once
	path string
	err  error
}

// MySQLEnforcerd returns the ods-enforcerd of Debian's
// opendnssec-enforcer-mysql, which conflicts with the SQLite package one
// machine has installed: fetched with apt-get download and unpacked with
// dpkg-deb -x into a cache folder, once.
func MySQLEnforcerd() (string, error) {
	mysqlEnforcer.once.Do(func() {
		mysqlEnforcer.path, mysqlEnforcer.err = fetchMySQLEnforcer()
	})
	return mysqlEnforcer.path, mysqlEnforcer.err
}

func fetchMySQLEnforcer() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "ods-keyguard-test", "opendnssec-enforcer-mysql")
	daemon := filepath.Join(dir, "root", "usr", "sbin", "ods-enforcerd")
	if _, err := os.Stat(daemon); err == nil {
		return daemon, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Test processes of several packages may get here at once.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(daemon); err == nil {
		return daemon, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl := exec.CommandContext(ctx, "apt-get", "download", "opendnssec-enforcer-mysql")
	dl.Dir = dir
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download opendnssec-enforcer-mysql: %v: %s", err, tail(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "opendnssec-enforcer-mysql_*.deb"))
	if len(debs) == 0 {
		return "", errors.New("apt-get download opendnssec-enforcer-mysql: no .deb")
	}
	tmp := filepath.Join(dir, "root.tmp")
	os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, tail(string(out)))
	}
	if err := os.Rename(tmp, filepath.Join(dir, "root")); err != nil {
		return "", err
	}
	if _, err := os.Stat(daemon); err != nil {
		return "", fmt.Errorf("opendnssec-enforcer-mysql: no usr/sbin/ods-enforcerd in %s", debs[0])
	}
	return daemon, nil
}

// CopyKasp copies every row of the enforcer's tables from a kasp.db into
// d, whose schema is loaded, as OpenDNSSEC's convert_sqlite_to_mysql does:
// the same enforcer state on both backends.
func CopyKasp(kaspDB string, d *Database) error {
	src, err := sql.Open("sqlite", "file:"+kaspDB+"?mode=ro")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := mysqlx.Open(mysqlx.Server{Host: "127.0.0.1", Port: d.Server.Port, User: d.User, Password: secret.Value(d.Password), Database: d.Name})
	if err != nil {
		return err
	}
	defer dst.Close()
	for _, table := range []string{"databaseVersion", "policy", "policyKey", "zone", "hsmKey", "keyData", "keyState", "keyDependency"} {
		if err := copyTable(src, dst, table); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
	}
	return nil
}

func copyTable(src, dst *sql.DB, table string) error {
	rows, err := src.Query("SELECT * FROM " + table)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	tx, err := dst.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(cols, ", "), strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "))
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if _, err := tx.Exec(q, vals...); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tx.Commit()
}

// LoadEnforcerSchema loads OpenDNSSEC's schema.mysql into d.
func (d *Database) LoadEnforcerSchema() error {
	schema, err := os.ReadFile("/usr/share/opendnssec/schema.mysql")
	if err != nil {
		return fmt.Errorf("enforcer schema: %w", err)
	}
	if _, err := d.Query(string(schema)); err != nil {
		return fmt.Errorf("enforcer schema in %s: %w", d.Name, err)
	}
	return nil
}

// TestDatabase is a new, empty database on the shared server for test t,
// dropped when t ends. Without MariaDB's tools the test is skipped, except
// under CI, where nothing skips.
func TestDatabase(t testing.TB, name string) *Database {
	t.Helper()
	NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb")
	srv, err := SharedMariaDB()
	if err != nil {
		t.Fatal(err)
	}
	db, err := srv.NewDatabase(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Drop() })
	return db
}

// Strict is true under CI (CI set), where nothing skips: a test that lacks
// a tool fails.
var Strict = os.Getenv("CI") != ""

// NeedTools fails t under CI, and skips it elsewhere, when one of tools is
// not on PATH.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "%s not found", tool)
		}
	}
}

// Missing ends a test that lacks what it needs (a tool, a file, root): a
// failure in CI (Strict), where nothing skips, and a skip elsewhere. The
// one place that decides it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict {
		t.Fatalf(format+", and CI does not skip", args...)
	}
	t.Skipf(format, args...)
}
