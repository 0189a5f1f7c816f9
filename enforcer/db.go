// Package enforcer reads OpenDNSSEC 2.1's enforcer database (read-only: the
// enforcer updates rows with optimistic locking and must be the only writer)
// and drives the enforcer through its ods-enforcer client.
package enforcer

import (
	"context"
	"fmt"
	"strings"
)

// DB is the enforcer's database, opened read-only: SQLite (sqlite.go) or
// MySQL (mysql.go), one backend each. A third datastore is a file of its
// own and a case in Open.
type DB struct {
	b backend
}

// backend is one kind of datastore, opened read-only.
type backend interface {
	// read takes one consistent snapshot of the enforcer's state.
	read(ctx context.Context) (*State, error)
	close() error
}

// Open opens the datastore read-only and checks that it is an OpenDNSSEC 2
// enforcer database, within ctx's deadline.
func Open(ctx context.Context, ds Datastore) (*DB, error) {
	var b backend
	var err error
	switch {
	case ds.MySQL != nil:
		b, err = openMySQL(ctx, *ds.MySQL)
	default:
		b, err = openSQLite(ctx, ds.SQLite)
	}
	if err != nil {
		return nil, err
	}
	return &DB{b: b}, nil
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

// Read takes a consistent snapshot of the enforcer's state, within ctx's
// deadline.
func (d *DB) Read(ctx context.Context) (*State, error) { return d.b.read(ctx) }

// Close closes the database.
func (d *DB) Close() error { return d.b.close() }

// errorf names the database in an error: "enforcer database NAME: ...".
func errorf(name, format string, args ...any) error {
	return fmt.Errorf("enforcer database %s: "+format, append([]any{name}, args...)...)
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
}
