package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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
//
// Every row carries its document as JSON with its SHA-256, as the files
// do: a row damaged or edited by hand is reported, never trusted. Writers
// serialise on a named server lock (GET_LOCK) on one connection, which the
// server releases when that connection ends: a host that dies mid-ceremony
// does not leave the lock behind. Each change is one transaction.
type mysqlLedger struct {
	db   *sql.DB
	srv  mysqlx.Server
	opts Options
}

const mysqlSchemaVersion = 1

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

func openMySQL(ctx context.Context, o Options) (*mysqlLedger, error) {
	db, err := mysqlx.Open(*o.MySQL)
	if err != nil {
		return nil, err
	}
	m := &mysqlLedger{db: db, srv: *o.MySQL, opts: o}
	if err := m.prepare(ctx, !o.ReadOnly); err != nil {
		db.Close()
		return nil, err
	}
	return m, nil
}

// errorf names the ledger database in an error, never its password.
func (m *mysqlLedger) errorf(format string, args ...any) error {
	return fmt.Errorf("ledger %s: "+format, append([]any{m.srv.String()}, args...)...)
}

// fail turns a driver error into one plain line.
func (m *mysqlLedger) fail(ctx context.Context, err error) error {
	var ce *CorruptError
	var ni *NotInitializedError
	if errors.As(err, &ce) || errors.As(err, &ni) {
		return err
	}
	if mysqlx.Number(err) == mysqlx.ErNoSuchTable {
		return &NotInitializedError{m.srv.String()}
	}
	if ctx.Err() != nil {
		return m.errorf("no answer in time (%v)", ctx.Err())
	}
	return m.errorf("%s", mysqlx.Explain(m.srv, err))
}

// prepare checks the schema version, making the tables first if create.
func (m *mysqlLedger) prepare(ctx context.Context, create bool) error {
	if create {
		for _, stmt := range mysqlTables {
			if _, err := m.db.ExecContext(ctx, stmt); err != nil {
				return m.fail(ctx, err)
			}
		}
		// One version row, made once however many hosts start at once.
		if _, err := m.db.ExecContext(ctx, `INSERT INTO keyguard_schema (version)
			SELECT ? FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM keyguard_schema)`, mysqlSchemaVersion); err != nil {
			return m.fail(ctx, err)
		}
	}
	var v int
	err := m.db.QueryRowContext(ctx, `SELECT max(version) FROM keyguard_schema`).Scan(&v)
	if err != nil {
		return m.fail(ctx, err)
	}
	if v != mysqlSchemaVersion {
		return m.errorf("schema version %d; this ods-keyguard knows version %d", v, mysqlSchemaVersion)
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

// lockName is the server-wide name of this ledger's writers' lock.
func (m *mysqlLedger) lockName() string { return "ods-keyguard:" + m.srv.Database }

func (m *mysqlLedger) lock(ctx context.Context) (func(), error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, m.fail(ctx, err)
	}
	try := func(seconds float64) (bool, error) {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, m.lockName(), seconds).Scan(&got); err != nil {
			return false, m.fail(ctx, err)
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
	// connections ended are stale now.
	if _, err := conn.ExecContext(ctx, `DELETE FROM keyguard_lock_holder WHERE conn <> CONNECTION_ID()`); err != nil {
		conn.Close()
		return nil, m.fail(ctx, err)
	}
	if _, err := conn.ExecContext(ctx, `REPLACE INTO keyguard_lock_holder (conn, host, pid, command, since)
		VALUES (CONNECTION_ID(), ?, ?, ?, UTC_TIMESTAMP(6))`, host(), os.Getpid(), command()); err != nil {
		conn.Close()
		return nil, m.fail(ctx, err)
	}
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
	where := fmt.Sprintf("%s table %s row %s", m.srv.String(), table, key)
	if hex.EncodeToString(s[:]) != sum {
		return &CorruptError{where, "checksum mismatch (damaged or edited by hand)"}
	}
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		return &CorruptError{where, "not valid JSON (" + err.Error() + ")"}
	}
	return nil
}

func (m *mysqlLedger) loadCeremonies(ctx context.Context) (map[string]*Ceremony, []*Ceremony, error) {
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, nil, m.fail(ctx, err)
	}
	defer tx.Rollback()
	open := map[string]*Ceremony{}
	rows, err := tx.QueryContext(ctx, `SELECT repository, doc, sha256 FROM keyguard_open ORDER BY repository`)
	if err != nil {
		return nil, nil, m.fail(ctx, err)
	}
	for rows.Next() {
		var repo, doc, sum string
		if err := rows.Scan(&repo, &doc, &sum); err != nil {
			rows.Close()
			return nil, nil, m.fail(ctx, err)
		}
		c := &Ceremony{}
		if err := m.unseal("keyguard_open", repo, doc, sum, c); err != nil {
			rows.Close()
			return nil, nil, err
		}
		open[repo] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, m.fail(ctx, err)
	}
	var history []*Ceremony
	rows, err = tx.QueryContext(ctx, `SELECT id, doc, sha256 FROM keyguard_history ORDER BY seq`)
	if err != nil {
		return nil, nil, m.fail(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, doc, sum string
		if err := rows.Scan(&id, &doc, &sum); err != nil {
			return nil, nil, m.fail(ctx, err)
		}
		c := &Ceremony{}
		if err := m.unseal("keyguard_history", id, doc, sum, c); err != nil {
			return nil, nil, err
		}
		history = append(history, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, m.fail(ctx, err)
	}
	return open, history, nil
}

// inTx runs f in one read-write transaction, committed when f succeeds.
func (m *mysqlLedger) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return m.fail(ctx, err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return m.fail(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		return m.fail(ctx, err)
	}
	return nil
}

func (m *mysqlLedger) putOpen(ctx context.Context, next map[string]*Ceremony, c *Ceremony) error {
	doc, sum, err := seal(c)
	if err != nil {
		return err
	}
	return m.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `REPLACE INTO keyguard_open (repository, id, doc, sha256, host, updated)
			VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`, c.Repository, c.ID, doc, sum, host())
		return err
	})
}

func (m *mysqlLedger) dropOpen(ctx context.Context, next map[string]*Ceremony, repo string) error {
	return m.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM keyguard_open WHERE repository = ?`, repo)
		return err
	})
}

// appendHistory adds c once: a ceremony already in the history with the
// same record is not added again (a retry after a crash); with another
// record under the same id it is an error.
func (m *mysqlLedger) appendHistory(ctx context.Context, next []*Ceremony, c *Ceremony) error {
	doc, sum, err := seal(c)
	if err != nil {
		return err
	}
	return m.inTx(ctx, func(tx *sql.Tx) error { return insertHistory(ctx, tx, c, doc, sum) })
}

func insertHistory(ctx context.Context, tx *sql.Tx, c *Ceremony, doc, sum string) error {
	var have string
	err := tx.QueryRowContext(ctx, `SELECT sha256 FROM keyguard_history WHERE id = ? FOR UPDATE`, c.ID).Scan(&have)
	switch {
	case err == nil && have == sum:
		return nil
	case err == nil:
		return fmt.Errorf("ceremony %s is in the history already, with another record", c.ID)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO keyguard_history (id, repository, doc, sha256, host, recorded)
		VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`, c.ID, c.Repository, doc, sum, host())
	return err
}

func (m *mysqlLedger) loadDS(ctx context.Context) ([]DSEvent, []Refused, error) {
	evs, err := m.events(ctx)
	return evs, nil, err
}

func (m *mysqlLedger) events(ctx context.Context) ([]DSEvent, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT id, doc, sha256 FROM keyguard_ds_event ORDER BY seq`)
	if err != nil {
		return nil, m.fail(ctx, err)
	}
	defer rows.Close()
	var evs []DSEvent
	for rows.Next() {
		var id, doc, sum string
		if err := rows.Scan(&id, &doc, &sum); err != nil {
			return nil, m.fail(ctx, err)
		}
		var e DSEvent
		if err := m.unseal("keyguard_ds_event", id, doc, sum, &e); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, m.fail(ctx, err)
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
	return m.inTx(ctx, func(tx *sql.Tx) error { return insertEvents(ctx, tx, evs) })
}

func insertEvents(ctx context.Context, tx *sql.Tx, evs []DSEvent) error {
	for _, e := range evs {
		doc, sum, err := seal(e)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT IGNORE INTO keyguard_ds_event (id, doc, sha256) VALUES (?, ?, ?)`, e.ID, doc, sum); err != nil {
			return err
		}
	}
	return nil
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
	return m.inTx(ctx, func(tx *sql.Tx) error {
		for len(drop) > 0 {
			n := min(len(drop), 500)
			q := `DELETE FROM keyguard_ds_event WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `)`
			if _, err := tx.ExecContext(ctx, q, drop[:n]...); err != nil {
				return err
			}
			drop = drop[n:]
		}
		return nil
	})
}

// counts says how many records the database holds.
func (m *mysqlLedger) counts(ctx context.Context) (open, history, events int, err error) {
	for _, q := range []struct {
		n     *int
		table string
	}{{&open, "keyguard_open"}, {&history, "keyguard_history"}, {&events, "keyguard_ds_event"}} {
		if err := m.db.QueryRowContext(ctx, `SELECT count(*) FROM `+q.table).Scan(q.n); err != nil {
			return 0, 0, 0, m.fail(ctx, err)
		}
	}
	return open, history, events, nil
}

// importAll writes a whole ledger into this empty one, in one transaction.
func (m *mysqlLedger) importAll(ctx context.Context, open map[string]*Ceremony, history []*Ceremony, evs []DSEvent) error {
	return m.inTx(ctx, func(tx *sql.Tx) error {
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
			if err := insertHistory(ctx, tx, c, doc, sum); err != nil {
				return err
			}
		}
		return insertEvents(ctx, tx, evs)
	})
}
