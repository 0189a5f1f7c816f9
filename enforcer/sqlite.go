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

// The enforcer in SQLite (opendnssec-enforcer-sqlite3, <Datastore><SQLite>):
// kasp.db opened read-only and query-only. While the enforcer makes keys it
// holds SQLite's write lock; a read that meets it is tried again until the
// caller's deadline.

// sqliteDB is kasp.db, opened read-only.
type sqliteDB struct {
	db   *sql.DB
	path string
}

// lockRetry is how long one attempt waits while the enforcer holds SQLite's
// write lock (it does so for as long as it generates keys); attempts go on
// until the caller's deadline.
const lockRetry = 100 * time.Millisecond

// LockedError is a database that was kept locked until the deadline.
// Holders names who held the lock, as far as /proc/locks tells.
type LockedError struct {
	Name    string
	After   time.Duration
	Holders []string
}

func (e *LockedError) Error() string {
	by := "another process (which one cannot be told; the enforcer holds the write lock while it makes keys)"
	if len(e.Holders) > 0 {
		by = strings.Join(e.Holders, " and ")
	}
	return fmt.Sprintf("enforcer database %s: locked by %s; still locked after %s s",
		e.Name, by, trimFloat(e.After.Seconds()))
}

func openSQLite(ctx context.Context, path string) (*sqliteDB, error) {
	if err := checkFile(path); err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", lockRetry.Milliseconds()))
	q.Add("_pragma", "query_only(1)")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("enforcer database %s: %w", path, err)
	}
	d := &sqliteDB{db: db, path: path}
	if err := d.retry(ctx, func() error {
		var n int
		return db.QueryRowContext(ctx, `SELECT count(*) FROM hsmKey`).Scan(&n)
	}); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

func (d *sqliteDB) close() error { return d.db.Close() }

// read takes a consistent snapshot in one read transaction, tried again
// while the enforcer holds the database locked, until ctx's deadline.
func (d *sqliteDB) read(ctx context.Context, zone string) (*State, error) {
	var st *State
	err := d.retry(ctx, func() error {
		tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st = &State{}
		return st.read(ctx, tx, zone)
	})
	return st, err
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
func (d *sqliteDB) retry(ctx context.Context, f func() error) error {
	start := time.Now()
	sawLock := false
	for {
		err := f()
		if err == nil {
			return nil
		}
		if sawLock && ctx.Err() != nil {
			return &LockedError{Name: d.path, After: time.Since(start), Holders: LockHolders(d.path)}
		}
		if !locked(err) {
			return d.classify(err)
		}
		sawLock = true
		select {
		case <-ctx.Done():
			return &LockedError{Name: d.path, After: time.Since(start), Holders: LockHolders(d.path)}
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
func (d *sqliteDB) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return errorf(d.path, "not an SQLite database")
		case sqlite3.SQLITE_CORRUPT:
			return errorf(d.path, "damaged (SQLite says the file is corrupt)")
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
			return errorf(d.path, "cannot open it: %w", syscall.EACCES)
		case sqlite3.SQLITE_ERROR:
			if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "no such column") {
				msg := strings.TrimPrefix(se.Error(), "SQL logic error: ")
				if i := strings.LastIndex(msg, " ("); i > 0 && strings.HasSuffix(msg, ")") {
					msg = msg[:i]
				}
				return errorf(d.path, "not an OpenDNSSEC 2 enforcer database (%s)", msg)
			}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errorf(d.path, "no answer in time: %w", err)
	}
	return errorf(d.path, "%w", err)
}
