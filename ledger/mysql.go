package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
)

// mysqlLedger keeps the ledger in a MySQL or MariaDB database of its own,
// shared by the hosts of an enforcer pair:
//
//	keyguard_schema        its version (1)
//	keyguard_open          the open ceremonies, one row per repository
//	keyguard_history       the ended ones, only ever added to
//	keyguard_ds_event      the DS records, added by the hooks
//	keyguard_lock_holder   who holds the writers' lock, for the message
//	keyguard_log           the log: every record as an entry chained by
//	                       hash, appended in the same transaction as the
//	                       record (schema version 2)
//	keyguard_checkpoint    the log's signed checkpoints
//
// Every row carries its document as JSON with its SHA-256, as the files
// do: a row damaged or edited by hand is reported, never trusted.
//
// Correctness rests on no lock: a Galera cluster does not share GET_LOCK
// between its nodes, and a fail-over to a replica loses it. Every change of
// an open ceremony is a compare-and-set on the row's checksum as the writer
// read it (UPDATE ... WHERE repository = ? AND sha256 = ?, then the rows
// affected), committed before the enforcer command it authorises; on a
// Galera cluster certification lets exactly one of two such transactions
// commit. Ending a ceremony (history row in, open row out) is one such
// transaction. Writers still take a named server lock (GET_LOCK) as a
// courtesy: one waits, and says for whom, instead of running into a
// conflict, where the lock is shared (one server). A transaction that meets
// a deadlock, a certification failure (1213), a lock wait timeout (1205) or
// a lost connection is tried again, a bounded number of times with jittered
// waits, within the caller's deadline: the compare-and-set makes that safe.
//
// Opening the ledger makes nothing (no DDL, which Galera runs cluster-wide
// in total order): ledger init and ledger migrate make the tables; others
// check the schema version row and say what to run.
type mysqlLedger struct {
	db   *sql.DB
	srv  mysqlx.Server
	opts Options
	info ServerInfo
}

const mysqlSchemaVersion = 2

var mysqlTables = []string{
	`CREATE TABLE IF NOT EXISTS keyguard_schema (
		version INT NOT NULL
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS keyguard_open (
		repository VARCHAR(255) NOT NULL PRIMARY KEY,
		id VARCHAR(191) NOT NULL,
		doc LONGTEXT NOT NULL,
		sha256 CHAR(64) NOT NULL,
		host VARCHAR(255) NOT NULL,
		updated DATETIME(6) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS keyguard_history (
		seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		id VARCHAR(191) NOT NULL UNIQUE,
		repository VARCHAR(255) NOT NULL,
		doc LONGTEXT NOT NULL,
		sha256 CHAR(64) NOT NULL,
		host VARCHAR(255) NOT NULL,
		recorded DATETIME(6) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS keyguard_ds_event (
		seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		id VARCHAR(191) NOT NULL UNIQUE,
		doc LONGTEXT NOT NULL,
		sha256 CHAR(64) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	// The log: seq is the entry's number and prev the hash of the entry
	// before it, each unique: two writers that both append after the same
	// entry conflict (a duplicate key on one server, a certification
	// failure on Galera), and one tries again after the other: one order,
	// never a fork.
	`CREATE TABLE IF NOT EXISTS keyguard_log (
		seq BIGINT UNSIGNED NOT NULL PRIMARY KEY,
		prev CHAR(64) NOT NULL UNIQUE,
		hash CHAR(64) NOT NULL,
		entry LONGTEXT NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS keyguard_checkpoint (
		size BIGINT UNSIGNED NOT NULL PRIMARY KEY,
		note TEXT NOT NULL,
		host VARCHAR(255) NOT NULL,
		made DATETIME(6) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS keyguard_publish (
		seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		id VARCHAR(191) NOT NULL UNIQUE,
		zone VARCHAR(255) NOT NULL,
		doc LONGTEXT NOT NULL,
		sha256 CHAR(64) NOT NULL,
		INDEX keyguard_publish_zone (zone, seq)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS keyguard_lock_holder (
		conn BIGINT UNSIGNED NOT NULL PRIMARY KEY,
		host VARCHAR(255) NOT NULL,
		pid INT NOT NULL,
		command VARCHAR(255) NOT NULL,
		since DATETIME(6) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
}

// NotInitializedError is a ledger database without ods-keyguard's tables,
// opened by a reader that may not make them.
type NotInitializedError struct{ Name string }

func (e *NotInitializedError) Error() string {
	return fmt.Sprintf("ledger %s: no ods-keyguard tables yet: run ods-keyguard ledger init (or ledger migrate) once", e.Name)
}

// OldSchemaError is a ledger database whose schema version is not this
// ods-keyguard's.
type OldSchemaError struct {
	Name      string
	Have, Our int
}

func (e *OldSchemaError) Error() string {
	if e.Have < e.Our {
		return fmt.Sprintf("ledger %s: schema version %d, this ods-keyguard needs version %d: run ods-keyguard ledger init once", e.Name, e.Have, e.Our)
	}
	return fmt.Sprintf("ledger %s: schema version %d, newer than this ods-keyguard knows (%d): upgrade ods-keyguard on this host", e.Name, e.Have, e.Our)
}

// ReadOnlyServerError is a writer pointed at a server that takes no writes:
// a replica, or a node that is not the primary.
type ReadOnlyServerError struct {
	Name, Why string
}

func (e *ReadOnlyServerError) Error() string {
	return fmt.Sprintf("ledger %s: the server is read-only (%s): a writer needs the primary: point [ledger] dsn at the primary (or the address that follows it), never at a replica", e.Name, e.Why)
}

func openMySQL(ctx context.Context, o Options) (*mysqlLedger, error) {
	db, err := mysqlx.Open(*o.MySQL)
	if err != nil {
		return nil, err
	}
	m := &mysqlLedger{db: db, srv: *o.MySQL, opts: o}
	if m.info, err = detect(ctx, db); err != nil {
		db.Close()
		return nil, m.fail(ctx, err, 0)
	}
	if m.info.Galera {
		// Reads that decide something see every write the cluster has
		// committed, whichever node made it: read-your-writes across nodes.
		db.Close()
		if m.db, err = mysqlx.Open(*o.MySQL, "wsrep_sync_wait", "1"); err != nil {
			return nil, err
		}
	}
	if o.Inspect {
		return m, nil // ledger status: reports what writers would refuse
	}
	if !o.ReadOnly && m.info.ReadOnly != "" {
		m.db.Close()
		return nil, &ReadOnlyServerError{m.srv.String(), m.info.ReadOnly}
	}
	if o.Create {
		err = m.create(ctx)
	} else {
		err = m.checkSchema(ctx)
	}
	if err != nil {
		m.db.Close()
		return nil, err
	}
	return m, nil
}

// ServerInfo is what a MySQL ledger's server is, as far as ods-keyguard's
// guarantees go.
type ServerInfo struct {
	Version string `json:"version"`
	// Galera: @@wsrep_on is 1; ClusterSize and NodeState from wsrep status.
	Galera      bool   `json:"galera"`
	ClusterSize int    `json:"cluster_size"`
	NodeState   string `json:"node_state"`
	// GroupReplication: a member of a MySQL group, with its role.
	GroupReplication string `json:"group_replication"`
	// ReadOnly says why the server takes no writes ("" when it does):
	// @@read_only, @@innodb_read_only, or a group member that is not
	// primary.
	ReadOnly string `json:"read_only"`
}

// Topology names the kind of server for messages.
func (i ServerInfo) Topology() string {
	switch {
	case i.Galera:
		return fmt.Sprintf("Galera cluster node (%s, %s)", human.Count(i.ClusterSize, "node"), i.NodeState)
	case i.GroupReplication != "":
		return "group replication " + strings.ToLower(i.GroupReplication)
	case i.ReadOnly != "":
		return "read-only server (a replica?)"
	}
	return "single server (or a primary)"
}

// detect asks the server what it is. Variables a server does not have (no
// wsrep on MySQL, no group replication on MariaDB) are taken as off.
func detect(ctx context.Context, db *sql.DB) (ServerInfo, error) {
	var i ServerInfo
	var ro, iro int
	if err := db.QueryRowContext(ctx, `SELECT @@version, @@read_only, @@innodb_read_only`).Scan(&i.Version, &ro, &iro); err != nil {
		return i, err
	}
	switch {
	case iro == 1:
		i.ReadOnly = "@@innodb_read_only is 1"
	case ro == 1:
		i.ReadOnly = "@@read_only is 1"
	}
	var wsrep sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT @@wsrep_on`).Scan(&wsrep); err == nil && wsrep.Int64 == 1 {
		i.Galera = true
		rows, err := db.QueryContext(ctx, `SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_local_state_comment')`)
		if err == nil {
			for rows.Next() {
				var k, v string
				if rows.Scan(&k, &v) == nil {
					switch k {
					case "wsrep_cluster_size":
						fmt.Sscan(v, &i.ClusterSize)
					case "wsrep_local_state_comment":
						i.NodeState = v
					}
				}
			}
			rows.Close()
		}
	} else if ctx.Err() != nil {
		return i, ctx.Err()
	}
	var role sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT MEMBER_ROLE FROM performance_schema.replication_group_members WHERE MEMBER_ID = @@server_uuid`).Scan(&role); err == nil && role.Valid {
		i.GroupReplication = role.String
		if role.String != "PRIMARY" && i.ReadOnly == "" {
			i.ReadOnly = "a group replication " + strings.ToLower(role.String)
		}
	} else if ctx.Err() != nil {
		return i, ctx.Err()
	}
	return i, nil
}

// errorf names the ledger database in an error, never its password.
func (m *mysqlLedger) errorf(format string, args ...any) error {
	return fmt.Errorf("ledger %s: "+format, append([]any{m.srv.String()}, args...)...)
}

// fail turns a driver error into one plain line; retried says how many
// times the transaction was tried again before it.
func (m *mysqlLedger) fail(ctx context.Context, err error, retried int) error {
	var ce *CorruptError
	var ni *NotInitializedError
	var cf *ConflictError
	var hc *historyConflict
	if errors.As(err, &ce) || errors.As(err, &ni) || errors.As(err, &cf) || errors.As(err, &hc) || errors.Is(err, errNotThere) {
		return err
	}
	if mysqlx.Number(err) == mysqlx.ErNoSuchTable {
		return &NotInitializedError{m.srv.String()}
	}
	if ctx.Err() != nil {
		if retried > 0 {
			return m.errorf("no answer in time, after %s (%s)", human.Count(retried+1, "try", "tries"), mysqlx.Explain(m.srv, err))
		}
		return m.errorf("no answer in time (%v)", ctx.Err())
	}
	if retried > 0 {
		return m.errorf("%s: retried %s", mysqlx.Explain(m.srv, err), human.Count(retried, "time"))
	}
	return m.errorf("%s", mysqlx.Explain(m.srv, err))
}

// create makes the tables and the version row: ledger init and ledger
// migrate only, never a writer's open.
func (m *mysqlLedger) create(ctx context.Context) error {
	for _, stmt := range mysqlTables {
		if _, err := m.db.ExecContext(ctx, stmt); err != nil {
			return m.fail(ctx, err, 0)
		}
	}
	// One version row, made once however many hosts start at once.
	// A ledger of version 1 gains the log's tables above, and its records
	// are covered by the log's first entry when it is made.
	if err := m.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO keyguard_schema (version)
			SELECT ? FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM keyguard_schema)`, mysqlSchemaVersion)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE keyguard_schema SET version = ? WHERE version < ?`, mysqlSchemaVersion, mysqlSchemaVersion)
		return err
	}); err != nil {
		return err
	}
	return m.checkSchema(ctx)
}

// checkSchema reads the version row: missing or old, it says what to run.
func (m *mysqlLedger) checkSchema(ctx context.Context) error {
	var v sql.NullInt64
	err := m.db.QueryRowContext(ctx, `SELECT max(version) FROM keyguard_schema`).Scan(&v)
	if err != nil {
		return m.fail(ctx, err, 0)
	}
	if !v.Valid {
		return &NotInitializedError{m.srv.String()}
	}
	if v.Int64 != mysqlSchemaVersion {
		return &OldSchemaError{m.srv.String(), int(v.Int64), mysqlSchemaVersion}
	}
	return nil
}

func (m *mysqlLedger) close() error { return m.db.Close() }

func (m *mysqlLedger) where() string { return "the ledger server " + m.srv.String() }

// lockHolder asks the server who holds the writers' lock. On a Galera
// cluster GET_LOCK is node-local: this sees only holders on the same node.
func (m *mysqlLedger) lockHolder(ctx context.Context) string {
	var used sql.NullInt64
	if err := m.db.QueryRowContext(ctx, `SELECT IS_USED_LOCK(?)`, m.lockName()).Scan(&used); err != nil || !used.Valid {
		return ""
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return fmt.Sprintf("connection %d", used.Int64)
	}
	defer conn.Close()
	return m.holder(ctx, conn)
}

// lockName is the server-wide name of this ledger's writers' lock. A test
// that plays two hosts on two nodes of a Galera cluster, on one server,
// gives each "node" a lock of its own ($ODS_KEYGUARD_TEST_LOCK_NODE), as
// Galera does: the ceremonies must stay right without the lock.
func (m *mysqlLedger) lockName() string {
	if n := os.Getenv(TestLockNodeEnv); n != "" {
		return "ods-keyguard:" + m.srv.Database + ":" + n
	}
	return "ods-keyguard:" + m.srv.Database
}

// TestLockNodeEnv names the environment variable of lockName, for tests.
const TestLockNodeEnv = "ODS_KEYGUARD_TEST_LOCK_NODE"

func (m *mysqlLedger) exclusive() bool { return false }

// lock takes the writers' courtesy lock (see mysqlLedger).
func (m *mysqlLedger) lock(ctx context.Context) (func(), error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, m.fail(ctx, err, 0)
	}
	try := func(seconds float64) (bool, error) {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, m.lockName(), seconds).Scan(&got); err != nil {
			return false, m.fail(ctx, err, 0)
		}
		return got.Valid && got.Int64 == 1, nil
	}
	ok, err := try(0)
	if err == nil && !ok {
		who := m.holder(ctx, conn)
		if m.opts.Waiting != nil {
			fmt.Fprintf(m.opts.Waiting, "ods-keyguard: waiting for the ledger lock of %s, held by %s\n", m.srv, who)
		}
		wait := m.opts.LockWait
		if dl, has := ctx.Deadline(); has && time.Until(dl) < wait {
			wait = time.Until(dl)
		}
		if wait > 0 {
			ok, err = try(wait.Seconds())
		}
		if err == nil && !ok {
			who = m.holder(ctx, conn)
			err = m.errorf("lock held by %s for over %s; try again when it is done", who, m.opts.LockWait)
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Who holds it, for the next one who waits; rows of holders whose
	// connections ended are stale now. A courtesy, like the lock: a
	// conflict with another node's row costs the message, nothing else.
	conn.ExecContext(ctx, `DELETE FROM keyguard_lock_holder WHERE conn <> CONNECTION_ID()`)
	conn.ExecContext(ctx, `REPLACE INTO keyguard_lock_holder (conn, host, pid, command, since)
		VALUES (CONNECTION_ID(), ?, ?, ?, UTC_TIMESTAMP(6))`, host(), os.Getpid(), command())
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.ExecContext(c, `DELETE FROM keyguard_lock_holder WHERE conn = CONNECTION_ID()`)
		conn.ExecContext(c, `DO RELEASE_LOCK(?)`, m.lockName())
		conn.Close()
	}, nil
}

// holder names who holds the lock: host, pid and command, as recorded.
func (m *mysqlLedger) holder(ctx context.Context, conn *sql.Conn) string {
	var host, cmd string
	var pid int
	var since time.Time
	var raw []byte
	err := conn.QueryRowContext(ctx, `SELECT h.host, h.pid, h.command, h.since FROM keyguard_lock_holder h
		WHERE h.conn = IS_USED_LOCK(?)`, m.lockName()).Scan(&host, &pid, &cmd, &raw)
	if err != nil {
		return "another connection (which one cannot be told)"
	}
	since, _ = time.Parse("2006-01-02 15:04:05.999999", string(raw))
	return fmt.Sprintf("%s pid %d (%s) since %s", host, pid, cmd, since.UTC().Format(time.RFC3339))
}

// command is this process's command line, cut short, for the lock holder.
func command() string {
	args := append([]string(nil), os.Args...)
	if len(args) == 0 {
		return "?"
	}
	args[0] = args[0][strings.LastIndex(args[0], "/")+1:]
	cmd := strings.Join(args, " ")
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return cmd
}

// row is one stored document and its checksum.
func seal(v any) (doc, sum string, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", "", err
	}
	s := sha256.Sum256(b)
	return string(b), hex.EncodeToString(s[:]), nil
}

func (m *mysqlLedger) unseal(table, key, doc, sum string, v any) error {
	s := sha256.Sum256([]byte(doc))
	where := fmt.Sprintf("ledger %s table %s row %s", m.srv.String(), table, key)
	if hex.EncodeToString(s[:]) != sum {
		return &CorruptError{Path: where, Reason: "checksum mismatch (damaged or edited by hand)", Row: true}
	}
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		return &CorruptError{Path: where, Reason: "not valid JSON (" + err.Error() + ")", Row: true}
	}
	return nil
}

func (m *mysqlLedger) loadCeremonies(ctx context.Context) (map[string]*Ceremony, map[string]string, []*Ceremony, error) {
	var open map[string]*Ceremony
	var sums map[string]string
	var history []*Ceremony
	err := m.retry(ctx, func() error {
		var err error
		open, sums, history, err = m.readCeremonies(ctx)
		return err
	})
	return open, sums, history, err
}

func (m *mysqlLedger) readCeremonies(ctx context.Context) (map[string]*Ceremony, map[string]string, []*Ceremony, error) {
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, nil, nil, err
	}
	defer tx.Rollback()
	open := map[string]*Ceremony{}
	sums := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT repository, doc, sha256 FROM keyguard_open ORDER BY repository`)
	if err != nil {
		return nil, nil, nil, err
	}
	for rows.Next() {
		var repo, doc, sum string
		if err := rows.Scan(&repo, &doc, &sum); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		c := &Ceremony{}
		if err := m.unseal("keyguard_open", repo, doc, sum, c); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		open[repo] = c
		sums[repo] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, err
	}
	var history []*Ceremony
	rows, err = tx.QueryContext(ctx, `SELECT id, doc, sha256 FROM keyguard_history ORDER BY seq`)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, doc, sum string
		if err := rows.Scan(&id, &doc, &sum); err != nil {
			return nil, nil, nil, err
		}
		c := &Ceremony{}
		if err := m.unseal("keyguard_history", id, doc, sum, c); err != nil {
			return nil, nil, nil, err
		}
		history = append(history, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, err
	}
	return open, sums, history, nil
}

// Transient errors: another transaction won (a deadlock, or on Galera a
// certification failure, 1213), a row lock waited too long (1205), the
// connection went (a node restarted, a fail-over). Tried again, they may
// succeed; every change is a compare-and-set or adds by id, so trying
// again never writes twice.
func transient(err error) bool {
	switch mysqlx.Number(err) {
	case mysqlx.ErLockDeadlock, mysqlx.ErLockWaitTimeout:
		return true
	}
	return errors.Is(err, errLogRace) || mysqlx.Lost(err)
}

// Tries and waits of retry: the waits double from retryBase up to
// retryCap, each jittered, and end at the caller's deadline.
const (
	retryTries = 8
	retryBase  = 20 * time.Millisecond
	retryCap   = 800 * time.Millisecond
)

// retry runs f, again while it fails transiently, within ctx's deadline.
// Its error says how many times it was tried again.
func (m *mysqlLedger) retry(ctx context.Context, f func() error) error {
	wait := retryBase
	var err error
	for try := 0; ; try++ {
		if err = f(); err == nil {
			return nil
		}
		if !transient(err) || try+1 >= retryTries || ctx.Err() != nil {
			return m.fail(ctx, err, try)
		}
		d := wait/2 + time.Duration(mrand.Int64N(int64(wait)))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return m.fail(ctx, err, try)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return m.fail(ctx, err, try)
		}
		wait = min(2*wait, retryCap)
	}
}

// inTx runs f in one read-write transaction, committed when f succeeds,
// tried again on a transient error (retry).
func (m *mysqlLedger) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	return m.retry(ctx, func() error {
		tx, err := m.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := f(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// errNotThere is a compare-and-set that found the row changed: the caller
// reads what it is now.
var errNotThere = errors.New("the record changed meanwhile")

func (m *mysqlLedger) putOpen(ctx context.Context, next map[string]*Ceremony, c *Ceremony, prev string) (string, error) {
	doc, sum, err := seal(c)
	if err != nil {
		return "", err
	}
	if sum == prev {
		return sum, nil
	}
	err = m.inTx(ctx, func(tx *sql.Tx) error {
		if prev == "" {
			_, err := tx.ExecContext(ctx, `INSERT INTO keyguard_open (repository, id, doc, sha256, host, updated)
				VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`, c.Repository, c.ID, doc, sum, host())
			if mysqlx.Number(err) == mysqlx.ErDupEntry {
				return errNotThere
			}
			if err != nil {
				return err
			}
			return m.appendTx(ctx, tx, []record{ceremonyRecord(doc)})
		}
		res, err := tx.ExecContext(ctx, `UPDATE keyguard_open SET id = ?, doc = ?, sha256 = ?, host = ?, updated = UTC_TIMESTAMP(6)
			WHERE repository = ? AND sha256 = ?`, c.ID, doc, sum, host(), c.Repository, prev)
		if err := affected(res, err); err != nil {
			return err
		}
		return m.appendTx(ctx, tx, []record{ceremonyRecord(doc)})
	})
	if errors.Is(err, errNotThere) {
		return sum, m.conflict(ctx, c.Repository, c.ID, sum)
	}
	return sum, err
}

// affected turns "no row matched" into errNotThere.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return errNotThere
	}
	return nil
}

// conflict reads what the repository's open record and the ceremony's
// history record are now. A record that is what this writer meant to
// write (want: its checksum; a commit whose answer the connection lost)
// is no conflict.
func (m *mysqlLedger) conflict(ctx context.Context, repo, id, want string) error {
	open, sums, history, err := m.loadCeremonies(ctx)
	if err != nil {
		return err
	}
	ce := &ConflictError{Repository: repo, ID: id, Current: open[repo], sum: sums[repo]}
	for _, h := range history {
		if h.ID == id {
			ce.Ended = h
		}
	}
	switch {
	case want != "" && ce.Current != nil && sums[repo] == want:
		return nil
	case want == "" && ce.Current == nil && ce.Ended == nil:
		return nil // dropped, as meant
	}
	return ce
}

func (m *mysqlLedger) dropOpen(ctx context.Context, next map[string]*Ceremony, repo, id, prev string) error {
	err := m.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM keyguard_open WHERE repository = ? AND sha256 = ?`, repo, prev)
		if err := affected(res, err); err != nil {
			return err
		}
		return m.appendTx(ctx, tx, []record{droppedRecord(repo, id)})
	})
	if errors.Is(err, errNotThere) {
		open, sums, _, lerr := m.loadCeremonies(ctx)
		if lerr != nil {
			return lerr
		}
		if open[repo] == nil {
			return nil // gone already, as meant
		}
		return &ConflictError{Repository: repo, ID: id, Current: open[repo], sum: sums[repo]}
	}
	return err
}

// end adds c to the history and drops its open record in one transaction,
// the drop guarded by prev: a ceremony another host changed meanwhile is
// not ended here. Ended already with the same record (by this host before
// a crash, or by another host), it is no conflict: recorded once.
func (m *mysqlLedger) end(ctx context.Context, history []*Ceremony, open map[string]*Ceremony, c *Ceremony, add bool, prev string) error {
	doc, sum, err := seal(c)
	if err != nil {
		return err
	}
	err = m.inTx(ctx, func(tx *sql.Tx) error {
		if add {
			// Logged once: a record already there (a retry after a
			// crash) was logged when it went in.
			if added, err := insertHistory(ctx, tx, c, doc, sum); err != nil {
				return err
			} else if added {
				if err := m.appendTx(ctx, tx, []record{ceremonyRecord(doc)}); err != nil {
					return err
				}
			}
		}
		failpoint.Hit("ledger-appended") // killed here, the transaction is not committed
		if prev == "" {
			return nil
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM keyguard_open WHERE repository = ? AND id = ? AND sha256 = ?`, c.Repository, c.ID, prev)
		return affected(res, err)
	})
	var other *historyConflict
	if !errors.As(err, &other) && !errors.Is(err, errNotThere) {
		return err
	}
	open2, sums, hist, lerr := m.loadCeremonies(ctx)
	if lerr != nil {
		return lerr
	}
	ce := &ConflictError{Repository: c.Repository, ID: c.ID, Current: open2[c.Repository], sum: sums[c.Repository]}
	for _, h := range hist {
		if h.ID == c.ID {
			ce.Ended = h
		}
	}
	if ce.Ended != nil && (ce.Current == nil || ce.Current.ID != c.ID) {
		if _, s2, _ := seal(ce.Ended); s2 == sum {
			return nil // recorded exactly so already: once
		}
	}
	return ce
}

// appendHistory adds c once: a ceremony already in the history with the
// same record is not added again (a retry after a crash); with another
// record under the same id it is an error.
func (m *mysqlLedger) appendHistory(ctx context.Context, c *Ceremony) error {
	doc, sum, err := seal(c)
	if err != nil {
		return err
	}
	return m.inTx(ctx, func(tx *sql.Tx) error {
		_, err := insertHistory(ctx, tx, c, doc, sum)
		return err
	})
}

// historyConflict is a ceremony in the history already, with another record.
type historyConflict struct{ id string }

func (e *historyConflict) Error() string {
	return fmt.Sprintf("ceremony %s is in the history already, with another record", e.id)
}

// insertHistory adds c to the history, and says whether it did: the same
// record there already is no error, and not added again.
func insertHistory(ctx context.Context, tx *sql.Tx, c *Ceremony, doc, sum string) (bool, error) {
	var have string
	err := tx.QueryRowContext(ctx, `SELECT sha256 FROM keyguard_history WHERE id = ? FOR UPDATE`, c.ID).Scan(&have)
	switch {
	case err == nil && have == sum:
		return false, nil
	case err == nil:
		return false, &historyConflict{c.ID}
	case !errors.Is(err, sql.ErrNoRows):
		return false, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO keyguard_history (id, repository, doc, sha256, host, recorded)
		VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`, c.ID, c.Repository, doc, sum, host())
	if mysqlx.Number(err) == mysqlx.ErDupEntry {
		return false, &historyConflict{c.ID}
	}
	return err == nil, err
}

func (m *mysqlLedger) loadDS(ctx context.Context) ([]DSEvent, []Refused, error) {
	evs, err := m.events(ctx)
	return evs, nil, err
}

func (m *mysqlLedger) events(ctx context.Context) ([]DSEvent, error) {
	var evs []DSEvent
	err := m.retry(ctx, func() error {
		var err error
		evs, err = m.readEvents(ctx)
		return err
	})
	return evs, err
}

func (m *mysqlLedger) readEvents(ctx context.Context) ([]DSEvent, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT id, doc, sha256 FROM keyguard_ds_event ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []DSEvent
	for rows.Next() {
		var id, doc, sum string
		if err := rows.Scan(&id, &doc, &sum); err != nil {
			return nil, err
		}
		var e DSEvent
		if err := m.unseal("keyguard_ds_event", id, doc, sum, &e); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return mergeEvents(evs), nil
}

// addDS adds the events in one transaction, without the writers' lock: a
// hook never waits behind a ceremony. An event already there (same id) is
// not added twice.
func (m *mysqlLedger) addDS(ctx context.Context, evs []DSEvent) error {
	if len(evs) == 0 {
		return nil
	}
	return m.inTx(ctx, func(tx *sql.Tx) error {
		n, err := insertEvents(ctx, tx, evs)
		if err != nil {
			return err
		}
		var recs []record
		for _, e := range n {
			r, err := dsRecord(e)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return m.appendTx(ctx, tx, recs)
	})
}

// insertEvents adds the events not there yet, and returns those it added.
func insertEvents(ctx context.Context, tx *sql.Tx, evs []DSEvent) ([]DSEvent, error) {
	var added []DSEvent
	for _, e := range evs {
		doc, sum, err := seal(e)
		if err != nil {
			return nil, err
		}
		res, err := tx.ExecContext(ctx, `INSERT IGNORE INTO keyguard_ds_event (id, doc, sha256) VALUES (?, ?, ?)`, e.ID, doc, sum)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			added = append(added, e)
		}
	}
	return added, nil
}

// compactDS drops, in one transaction, the events beyond max that decide
// nothing any more (bound).
func (m *mysqlLedger) compactDS(ctx context.Context, max int) error {
	evs, err := m.events(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, e := range bound(evs, max, time.Now()) {
		keep[e.ID] = true
	}
	var drop []any
	for _, e := range evs {
		if !keep[e.ID] {
			drop = append(drop, e.ID)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	ids := make([]string, len(drop))
	for i, d := range drop {
		ids[i] = d.(string)
	}
	return m.inTx(ctx, func(tx *sql.Tx) error {
		drop := drop
		for len(drop) > 0 {
			n := min(len(drop), 500)
			q := `DELETE FROM keyguard_ds_event WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `)`
			if _, err := tx.ExecContext(ctx, q, drop[:n]...); err != nil {
				return err
			}
			drop = drop[n:]
		}
		return m.appendTx(ctx, tx, []record{{KindDSCompacted, compactedRecord{Dropped: ids}}})
	})
}

// counts says how many records the database holds.
func (m *mysqlLedger) counts(ctx context.Context) (open, history, events int, err error) {
	for _, q := range []struct {
		n     *int
		table string
	}{{&open, "keyguard_open"}, {&history, "keyguard_history"}, {&events, "keyguard_ds_event"}} {
		if err := m.db.QueryRowContext(ctx, `SELECT count(*) FROM `+q.table).Scan(q.n); err != nil {
			return 0, 0, 0, m.fail(ctx, err, 0)
		}
	}
	return open, history, events, nil
}

// importAll writes a whole ledger into this empty one, in one transaction:
// the records, the log and its checkpoints as they are, and the publish
// gate's records.
func (m *mysqlLedger) importAll(ctx context.Context, open map[string]*Ceremony, history []*Ceremony, evs []DSEvent, log []Stored, notes []storedNote, pubs []PublishRecord) error {
	return m.inTx(ctx, func(tx *sql.Tx) error {
		if err := importLog(ctx, tx, log, notes); err != nil {
			return err
		}
		for _, c := range open {
			doc, sum, err := seal(c)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO keyguard_open (repository, id, doc, sha256, host, updated)
				VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`, c.Repository, c.ID, doc, sum, host()); err != nil {
				return err
			}
		}
		for _, c := range history {
			doc, sum, err := seal(c)
			if err != nil {
				return err
			}
			if _, err := insertHistory(ctx, tx, c, doc, sum); err != nil {
				return err
			}
		}
		if _, err := insertEvents(ctx, tx, evs); err != nil {
			return err
		}
		return insertPublish(ctx, tx, pubs)
	})
}
