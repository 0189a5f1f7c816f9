package enforcer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
)

// The one write ods-keyguard makes to the enforcer's database: recover
// prune-pool removes hsmKey rows of pool keys that no HSM holds, with the
// enforcer stopped. OpenDNSSEC 2.1 has no command for it. This file is the
// narrow way in: one transaction that deletes given rows only while each is
// still as the caller read it, and hands the caller each row before it
// goes, for the undo. Everything else in this package reads.

// Removal is an hsmKey row to delete, as the caller read it: deleted only
// while it still has that locator and state and no keyData names it.
type Removal struct {
	ID      int64
	Locator string // hexadecimal, as the enforcer makes them
	State   KeyState
}

// Statement is the DELETE that removes the row, the same text on SQLite
// and MySQL: what RemoveKeys runs, and what an operator may read (or run
// by hand, with the enforcer stopped).
func (k Removal) Statement() string {
	return fmt.Sprintf("DELETE FROM hsmKey WHERE id = %d AND lower(locator) = '%s' AND state = %d AND id NOT IN (SELECT hsmKeyId FROM keyData);",
		k.ID, strings.ToLower(k.Locator), int(k.State))
}

// hexLocator is what a locator must look like to go into a statement.
var hexLocator = regexp.MustCompile(`^[0-9a-fA-F]{1,256}$`)

// HSMKeyRow is an hsmKey row whole, as it was before it was deleted.
type HSMKeyRow struct {
	ID, Rev, PolicyID, State, Bits, Algorithm, Role, Inception, Revoked, KeyType, Backup int64
	Locator, Repository                                                                  string
}

// Insert is the statement that puts the row back, on the datastore it
// came from.
func (r HSMKeyRow) Insert(mysql bool) string {
	return fmt.Sprintf("INSERT INTO hsmKey (id, rev, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup) VALUES (%d, %d, %d, %s, %d, %d, %d, %d, %d, %d, %d, %s, %d);",
		r.ID, r.Rev, r.PolicyID, sqlString(r.Locator, mysql), r.State, r.Bits, r.Algorithm, r.Role, r.Inception,
		r.Revoked, r.KeyType, sqlString(r.Repository, mysql), r.Backup)
}

// ErrChanged is a row that is no longer what the caller read.
var ErrChanged = errors.New("changed since it was read")

// PruneOptions are what RemoveKeys does besides deleting.
type PruneOptions struct {
	// Copy, for SQLite, receives a copy of the whole database taken inside
	// the transaction, before anything is deleted (VACUUM INTO a private
	// temporary folder; the caller stores the bytes where it keeps such
	// things).
	Copy func(data []byte) error
	// Before receives the rows as they are, read under the transaction's
	// lock once every one was found unchanged, before the first delete:
	// what the caller records to undo the removal. An error stops it all.
	Before func(rows []HSMKeyRow) error
}

// RemoveKeys deletes the rows of keys in one transaction on ds. A row that
// is gone, has another locator or state, or is named by keyData stops it
// all with an error that wraps ErrChanged: nothing is deleted. It returns
// whether the transaction committed; an error after the commit was asked
// leaves that unknown, and says so.
func RemoveKeys(ctx context.Context, ds Datastore, keys []Removal, opt PruneOptions) (committed bool, err error) {
	for _, k := range keys {
		if !hexLocator.MatchString(k.Locator) {
			return false, fmt.Errorf("hsmKey %d: locator %q is not hexadecimal: not a key ods-keyguard removes", k.ID, k.Locator)
		}
	}
	mysql := ds.MySQL != nil
	var db *sql.DB
	if mysql {
		db, err = mysqlx.Open(ds.MySQL.server())
	} else {
		if fi, serr := os.Lstat(ds.SQLite); serr != nil || !fi.Mode().IsRegular() {
			return false, errorf(ds.SQLite, "not a regular file")
		}
		db, err = sql.Open("sqlite", "file:"+ds.SQLite+"?_pragma=busy_timeout(5000)")
	}
	if err != nil {
		return false, errorf(ds.String(), "%w", err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, errorf(ds.String(), "%w", err)
	}
	defer conn.Close()
	if !mysql && opt.Copy != nil {
		if err := copySQLite(ctx, conn, ds.SQLite, opt.Copy); err != nil {
			return false, err
		}
	}
	begin := "BEGIN IMMEDIATE"
	if mysql {
		begin = "START TRANSACTION"
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return false, errorf(ds.String(), "%s: %w", begin, err)
	}
	done := false
	defer func() {
		if !done {
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	lock := ""
	if mysql {
		lock = " FOR UPDATE"
	}
	var rows []HSMKeyRow
	for _, k := range keys {
		var r HSMKeyRow
		err := conn.QueryRowContext(ctx, `SELECT id, rev, policyId, locator, state, bits, algorithm, role, inception,
			isRevoked, keyType, repository, backup FROM hsmKey WHERE id = ?`+lock, k.ID).Scan(
			&r.ID, &r.Rev, &r.PolicyID, &r.Locator, &r.State, &r.Bits, &r.Algorithm, &r.Role, &r.Inception,
			&r.Revoked, &r.KeyType, &r.Repository, &r.Backup)
		if errors.Is(err, sql.ErrNoRows) {
			return false, fmt.Errorf("hsmKey %d (%s): gone: %w; nothing deleted", k.ID, k.Locator, ErrChanged)
		}
		if err != nil {
			return false, errorf(ds.String(), "hsmKey %d: %w", k.ID, err)
		}
		var uses int
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM keyData WHERE hsmKeyId = ?`, k.ID).Scan(&uses); err != nil {
			return false, errorf(ds.String(), "keyData of hsmKey %d: %w", k.ID, err)
		}
		switch {
		case !strings.EqualFold(r.Locator, k.Locator):
			return false, fmt.Errorf("hsmKey %d: locator %s, not %s: %w; nothing deleted", k.ID, r.Locator, k.Locator, ErrChanged)
		case r.State != int64(k.State):
			return false, fmt.Errorf("hsmKey %d (%s): now %s, not %s: %w; nothing deleted", k.ID, k.Locator, KeyState(r.State), k.State, ErrChanged)
		case uses > 0:
			return false, fmt.Errorf("hsmKey %d (%s): now assigned to a zone: %w; nothing deleted", k.ID, k.Locator, ErrChanged)
		}
		rows = append(rows, r)
	}
	if opt.Before != nil {
		if err := opt.Before(rows); err != nil {
			return false, err
		}
	}
	for _, k := range keys {
		res, err := conn.ExecContext(ctx, k.Statement())
		if err != nil {
			return false, errorf(ds.String(), "%s: %w", k.Statement(), err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return false, fmt.Errorf("hsmKey %d (%s): deleted %s, not 1: %w; nothing deleted", k.ID, k.Locator, human.Count(int(n), "row"), ErrChanged)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return false, errorf(ds.String(), "COMMIT: %w; rolled back, nothing deleted", err)
	}
	done = true
	return true, nil
}

// copySQLite gives copy a consistent copy of the database, made by SQLite
// (VACUUM INTO) in a private temporary folder of its own.
func copySQLite(ctx context.Context, conn *sql.Conn, name string, copy func([]byte) error) error {
	tmp, err := os.MkdirTemp("", "ods-keyguard-kasp-copy-")
	if err != nil {
		return errorf(name, "copy: %w", err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "kasp.db")
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return errorf(name, "copy: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return errorf(name, "copy: %w", err)
	}
	return copy(data)
}

// sqlString quotes s as an SQL string literal: quotes doubled, and for
// MySQL backslashes too.
func sqlString(s string, mysql bool) string {
	if mysql {
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
