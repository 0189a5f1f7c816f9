// Package enforcer reads OpenDNSSEC 2.1's enforcer database (read-only: the
// enforcer updates rows with optimistic locking and must be the only writer)
// and drives the enforcer through its ods-enforcer client.
package enforcer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/perm"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is the enforcer's database, opened read-only.
type DB struct {
	db   *sql.DB
	ds   Datastore
	name string // for messages: the file, or mysql://user@host:port/db
}

// lockRetry is how long one attempt waits while the enforcer holds SQLite's
// write lock (it does so for as long as it generates keys); attempts go on
// until the caller's deadline.
const lockRetry = 100 * time.Millisecond

// LockedError is a database that the enforcer kept locked until the deadline.
type LockedError struct {
	Name  string
	After time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("enforcer database %s: locked by the enforcer (it holds the write lock while it makes keys); still locked after %s s",
		e.Name, trimFloat(e.After.Seconds()))
}

// Open opens the datastore read-only and checks that it is an OpenDNSSEC 2
// enforcer database. A database the enforcer keeps locked is tried again
// until ctx's deadline.
func Open(ctx context.Context, ds Datastore) (*DB, error) {
	if ds.MySQL != nil {
		return openMySQL(ctx, ds)
	}
	if err := checkFile(ds.SQLite); err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: ds.SQLite}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", lockRetry.Milliseconds()))
	q.Add("_pragma", "query_only(1)")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("enforcer database %s: %w", ds.SQLite, err)
	}
	d := &DB{db: db, ds: ds, name: ds.SQLite}
	if err := d.retry(ctx, func() error {
		var n int
		return db.QueryRowContext(ctx, `SELECT count(*) FROM hsmKey`).Scan(&n)
	}); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// checkFile gives a plain message for what SQLite would call an I/O error.
func checkFile(path string) error {
	if path == "" {
		return errors.New("enforcer database: conf.xml names no <SQLite> file")
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("enforcer database %s: %w", path, perm.Explain(path, unwrapPath(err)))
	case fi.IsDir():
		return fmt.Errorf("enforcer database %s: is a directory, not a database file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("enforcer database %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("enforcer database %s: %w", path, perm.Explain(path, unwrapPath(err)))
	}
	return f.Close()
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// retry runs f until it succeeds, fails for another reason than a lock, or
// ctx ends; the error is then classified.
func (d *DB) retry(ctx context.Context, f func() error) error {
	start := time.Now()
	sawLock := false
	for {
		err := f()
		if err == nil {
			return nil
		}
		if sawLock && ctx.Err() != nil {
			return &LockedError{Name: d.name, After: time.Since(start)}
		}
		if !locked(err) {
			return d.classify(err)
		}
		sawLock = true
		select {
		case <-ctx.Done():
			return &LockedError{Name: d.name, After: time.Since(start)}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func locked(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}

// classify names what is wrong with the database in plain words.
func (d *DB) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return d.errorf("not an SQLite database")
		case sqlite3.SQLITE_CORRUPT:
			return d.errorf("damaged (SQLite says the file is corrupt)")
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
			return d.errorf("cannot open it: %w", syscall.EACCES)
		case sqlite3.SQLITE_ERROR:
			if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "no such column") {
				msg := strings.TrimPrefix(se.Error(), "SQL logic error: ")
				if i := strings.LastIndex(msg, " ("); i > 0 && strings.HasSuffix(msg, ")") {
					msg = msg[:i]
				}
				return d.errorf("not an OpenDNSSEC 2 enforcer database (%s)", msg)
			}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return d.errorf("no answer in time: %w", err)
	}
	return d.errorf("%w", err)
}

// ReadDatastore opens the datastore, takes one snapshot and closes it.
func ReadDatastore(ctx context.Context, ds Datastore) (*State, error) {
	db, err := Open(ctx, ds)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.Read(ctx)
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

func (d *DB) errorf(format string, args ...any) error {
	return fmt.Errorf("enforcer database %s: "+format, append([]any{d.name}, args...)...)
}

// Read takes a consistent snapshot in one read transaction, tried again
// while the enforcer holds the database locked, until ctx's deadline.
func (d *DB) Read(ctx context.Context) (*State, error) {
	if d.ds.MySQL != nil {
		return d.readMySQL(ctx)
	}
	var st *State
	err := d.retry(ctx, func() error {
		var err error
		st, err = d.read(ctx)
		return err
	})
	return st, err
}

func (d *DB) read(ctx context.Context) (*State, error) {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	st := &State{}
	if err := st.read(ctx, tx); err != nil {
		return nil, err
	}
	return st, nil
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
}
