// Package enforcer reads OpenDNSSEC 2.1's enforcer database (read-only: the
// enforcer updates rows with optimistic locking and must be the only writer)
// and drives the enforcer through its ods-enforcer client.
package enforcer

import (
	"context"
	"errors"
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
	// read takes one consistent snapshot of the enforcer's state: of
	// zone and its keys only, when zone is not "".
	read(ctx context.Context, zone string) (*State, error)
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

// ReadDatastoreZone opens the datastore, reads one zone (ReadZone) and
// closes it.
func ReadDatastoreZone(ctx context.Context, ds Datastore, zone string) (*State, error) {
	db, err := Open(ctx, ds)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.ReadZone(ctx, zone)
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
func (d *DB) Read(ctx context.Context) (*State, error) { return d.b.read(ctx, "") }

// ReadZone reads one zone, its keys with their uses by that zone (a key
// the zone shares with others shows only this zone's use), and every
// policy, in one consistent snapshot: what one zone's decision needs, at a
// cost that does not grow with the other zones. A zone the enforcer does
// not have gives a State without zones.
func (d *DB) ReadZone(ctx context.Context, zone string) (*State, error) {
	if zone == "" {
		return nil, errors.New("enforcer database: no zone named")
	}
	return d.b.read(ctx, zone)
}

// Close closes the database.
func (d *DB) Close() error { return d.b.close() }

// errorf names the database in an error: "enforcer database NAME: ...".
func errorf(name, format string, args ...any) error {
	return fmt.Errorf("enforcer database %s: "+format, append([]any{name}, args...)...)
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
}
