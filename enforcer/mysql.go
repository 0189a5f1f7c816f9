package enforcer

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
)

// The enforcer in MySQL or MariaDB (opendnssec-enforcer-mysql): the same
// tables and the same queries as SQLite (queries.go). What differs is how
// a consistent read begins: one connection, a REPEATABLE READ transaction
// started WITH CONSISTENT SNAPSHOT and READ ONLY, so every table is read as
// of one moment while the enforcer goes on writing, and nothing can be
// written through it. InnoDB readers do not wait for writers: there is no
// lock to retry, only the deadline.

// mysqlDB is the enforcer's MySQL database, opened for reading only.
type mysqlDB struct {
	db  *sql.DB
	srv mysqlx.Server
}

func openMySQL(ctx context.Context, m MySQL) (*mysqlDB, error) {
	srv := m.server()
	db, err := mysqlx.Open(srv)
	if err != nil {
		return nil, err
	}
	d := &mysqlDB{db: db, srv: srv}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM hsmKey`).Scan(&n); err != nil {
		db.Close()
		return nil, d.classifyMySQL(ctx, err)
	}
	return d, nil
}

func (d *mysqlDB) close() error { return d.db.Close() }

func (d *mysqlDB) read(ctx context.Context, zone string) (*State, error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, d.classifyMySQL(ctx, err)
	}
	defer conn.Close()
	for _, stmt := range []string{
		`SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ`,
		`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`,
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return nil, d.classifyMySQL(ctx, err)
		}
	}
	// Ends the transaction; a connection whose context ended is dropped
	// by the driver, and the server rolls back.
	defer conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
	if afterSnapshot != nil {
		afterSnapshot()
	}
	st := &State{}
	if err := st.read(ctx, conn, zone); err != nil {
		return nil, d.classifyMySQL(ctx, err)
	}
	return st, nil
}

// classifyMySQL names what is wrong with the server or the database.
func (d *mysqlDB) classifyMySQL(ctx context.Context, err error) error {
	switch mysqlx.Number(err) {
	case mysqlx.ErNoSuchTable, mysqlx.ErBadField:
		return errorf(d.srv.String(), "not an OpenDNSSEC 2 enforcer database (%s)", mysqlx.Message(err))
	}
	if ctx.Err() != nil && !errors.Is(err, sql.ErrNoRows) {
		return errorf(d.srv.String(), "no answer in time: %w", ctx.Err())
	}
	return errorf(d.srv.String(), "%s", mysqlx.Explain(d.srv, err))
}

var _ querier = (*sql.Conn)(nil)

// afterSnapshot, in tests, runs between the start of the snapshot and the
// first query: where the enforcer's writes must no longer show.
var afterSnapshot func()
