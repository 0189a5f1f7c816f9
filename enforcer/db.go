// Package enforcer reads OpenDNSSEC 2.1's enforcer database (read-only: the
// enforcer updates rows with optimistic locking and must be the only writer)
// and drives the enforcer through its ods-enforcer client.
package enforcer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/config"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// DB is the enforcer's database, opened read-only.
type DB struct {
	db   *sql.DB
	path string
}

// busyTimeout is how long a read waits while the enforcer holds SQLite's
// write lock (it does so for as long as it generates keys).
const busyTimeout = 10 * time.Second

// Open opens the datastore that conf.xml names, read-only.
func Open(ds config.Datastore) (*DB, error) {
	if ds.MySQL {
		return nil, errors.New("enforcer database: MySQL datastore not supported yet")
	}
	if _, err := os.Stat(ds.SQLite); err != nil {
		return nil, fmt.Errorf("enforcer database %s: %w", ds.SQLite, errors.Unwrap(err))
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: ds.SQLite}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "query_only(1)")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("enforcer database %s: %w", ds.SQLite, err)
	}
	d := &DB{db: db, path: ds.SQLite}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM hsmKey`).Scan(&n); err != nil {
		db.Close()
		return nil, d.errorf("not an OpenDNSSEC 2 enforcer database: %w", err)
	}
	return d, nil
}

// ReadDatastore opens the datastore, takes one snapshot and closes it.
func ReadDatastore(ctx context.Context, ds config.Datastore) (*State, error) {
	db, err := Open(ds)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.Read(ctx)
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Path is the database file.
func (d *DB) Path() string { return d.path }

func (d *DB) errorf(format string, args ...any) error {
	return fmt.Errorf("enforcer database %s: "+format, append([]any{d.path}, args...)...)
}

// State is one consistent read of the enforcer's keys, zones and policies.
type State struct {
	Keys     []*Key
	Zones    []*Zone
	Policies []*Policy
	ReadAt   time.Time
}

// Read takes a consistent snapshot in one read transaction.
func (d *DB) Read(ctx context.Context) (*State, error) {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, d.errorf("%w", err)
	}
	defer tx.Rollback()
	st := &State{ReadAt: time.Now()}
	if err := st.readPolicies(ctx, tx); err != nil {
		return nil, d.errorf("policies: %w", err)
	}
	if err := st.readZones(ctx, tx); err != nil {
		return nil, d.errorf("zones: %w", err)
	}
	if err := st.readKeys(ctx, tx); err != nil {
		return nil, d.errorf("keys: %w", err)
	}
	return st, nil
}

func (st *State) readPolicies(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, name, keysShared, parentDsTtl, parentPropagationDelay,
		parentRegistrationDelay, signaturesValidityDefault, signaturesRefresh, keysTtl FROM policy ORDER BY id`)
	if err != nil {
		return err
	}
	byID := map[int64]*Policy{}
	for rows.Next() {
		p := &Policy{}
		var shared int
		var dsTTL, prop, reg, validity, refresh, keyTTL int64
		if err := rows.Scan(&p.ID, &p.Name, &shared, &dsTTL, &prop, &reg, &validity, &refresh, &keyTTL); err != nil {
			rows.Close()
			return err
		}
		p.KeysShared = shared != 0
		p.ParentDSTTL = seconds(dsTTL)
		p.ParentPropagationDelay = seconds(prop)
		p.ParentRegistrationDelay = seconds(reg)
		p.SignatureValidity = seconds(validity)
		p.SignatureRefresh = seconds(refresh)
		p.KeyTTL = seconds(keyTTL)
		st.Policies = append(st.Policies, p)
		byID[p.ID] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, `SELECT policyId, role, algorithm, bits, lifetime, repository,
		standby, manualRollover FROM policyKey ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pk PolicyKey
		var pid, lifetime int64
		var manual int
		if err := rows.Scan(&pid, &pk.Role, &pk.Algorithm, &pk.Bits, &lifetime, &pk.Repository, &pk.Standby, &manual); err != nil {
			return err
		}
		pk.Lifetime = seconds(lifetime)
		pk.ManualRollover = manual != 0
		if p := byID[pid]; p != nil {
			p.Keys = append(p.Keys, pk)
		}
	}
	return rows.Err()
}

func (st *State) readZones(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, name, policyId, nextKskRoll, nextZskRoll, nextCskRoll,
		signconfPath, inputAdapterType, inputAdapterUri, outputAdapterType, outputAdapterUri FROM zone ORDER BY name`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		z := &Zone{}
		var pid, ksk, zsk, csk int64
		if err := rows.Scan(&z.ID, &z.Name, &pid, &ksk, &zsk, &csk, &z.SignconfPath,
			&z.InputType, &z.InputURI, &z.OutputType, &z.OutputURI); err != nil {
			return err
		}
		z.NextRoll = map[Role]time.Time{KSK: unix(ksk), ZSK: unix(zsk), CSK: unix(csk)}
		z.Policy = st.policy(pid)
		st.Zones = append(st.Zones, z)
	}
	return rows.Err()
}

func (st *State) readKeys(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, locator, repository, policyId, role, state, backup,
		algorithm, bits, inception, keyType FROM hsmKey ORDER BY id`)
	if err != nil {
		return err
	}
	byID := map[int64]*Key{}
	for rows.Next() {
		k := &Key{}
		var pid, inception int64
		if err := rows.Scan(&k.ID, &k.Locator, &k.Repository, &pid, &k.Role, &k.State, &k.Backup,
			&k.Algorithm, &k.Bits, &inception, &k.KeyType); err != nil {
			rows.Close()
			return err
		}
		k.Locator = strings.ToLower(k.Locator)
		k.Inception = unix(inception)
		k.Policy = st.policy(pid)
		st.Keys = append(st.Keys, k)
		byID[k.ID] = k
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	zones := map[int64]*Zone{}
	for _, z := range st.Zones {
		zones[z.ID] = z
	}
	rows, err = tx.QueryContext(ctx, `SELECT id, zoneId, hsmKeyId, role, keytag, dsAtParent, publish,
		activeZsk, activeKsk, introducing, inception FROM keyData ORDER BY id`)
	if err != nil {
		return err
	}
	uses := map[int64]*Use{}
	for rows.Next() {
		u := &Use{States: map[RecordType]RecordState{}}
		var id, zid, hid, inception int64
		var publish, azsk, aksk, intro int
		if err := rows.Scan(&id, &zid, &hid, &u.Role, &u.KeyTag, &u.DSAtParent, &publish, &azsk, &aksk, &intro, &inception); err != nil {
			rows.Close()
			return err
		}
		u.Publish, u.ActiveZSK, u.ActiveKSK, u.Introducing = publish != 0, azsk != 0, aksk != 0, intro != 0
		u.Inception = unix(inception)
		u.Zone = zones[zid]
		k := byID[hid]
		if k == nil || u.Zone == nil {
			continue
		}
		u.Key = k
		k.Uses = append(k.Uses, u)
		u.Zone.Keys = append(u.Zone.Keys, u)
		uses[id] = u
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, `SELECT keyDataId, type, state, lastChange FROM keyState`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var kid, last int64
		var typ RecordType
		var state RecordState
		if err := rows.Scan(&kid, &typ, &state, &last); err != nil {
			return err
		}
		if u := uses[kid]; u != nil {
			u.States[typ] = state
			if t := unix(last); t.After(u.LastChange) {
				u.LastChange = t
			}
		}
	}
	return rows.Err()
}

func (st *State) policy(id int64) *Policy {
	for _, p := range st.Policies {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

func unix(n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}
