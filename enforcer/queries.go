package enforcer

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// The enforcer's tables are the same in schema.sqlite and schema.mysql:
// these queries serve both. What differs between the two dialects is how
// the read transaction starts (see db.go and mysql.go).

// querier is a read transaction of either dialect.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// State is one consistent read of the enforcer's keys, zones and policies.
type State struct {
	Keys     []*Key
	Zones    []*Zone
	Policies []*Policy
}

// read reads every table; with zone not "", only that zone and its keys
// (and every policy): what one zone's decision needs, without the cost of
// the whole database.
func (st *State) read(ctx context.Context, q querier, zone string) error {
	if err := st.readPolicies(ctx, q); err != nil {
		return err
	}
	if err := st.readZones(ctx, q, zone); err != nil {
		return err
	}
	if zone != "" && len(st.Zones) == 0 {
		return nil // no such zone: no keys of it either
	}
	return st.readKeys(ctx, q, zone)
}

func (st *State) readPolicies(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `SELECT id, name, keysShared, parentDsTtl, parentPropagationDelay,
		parentRegistrationDelay, keysTtl, signaturesResign, signaturesRefresh FROM policy ORDER BY id`)
	if err != nil {
		return err
	}
	byID := map[int64]*Policy{}
	for rows.Next() {
		p := &Policy{}
		var shared int
		var dsTTL, prop, reg, keyTTL, resign, refresh int64
		if err := rows.Scan(&p.ID, &p.Name, &shared, &dsTTL, &prop, &reg, &keyTTL, &resign, &refresh); err != nil {
			rows.Close()
			return err
		}
		p.KeysShared = shared != 0
		p.ParentDSTTL = seconds(dsTTL)
		p.ParentPropagationDelay = seconds(prop)
		p.ParentRegistrationDelay = seconds(reg)
		p.KeyTTL = seconds(keyTTL)
		p.SignaturesResign, p.SignaturesRefresh = seconds(resign), seconds(refresh)
		st.Policies = append(st.Policies, p)
		byID[p.ID] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = q.QueryContext(ctx, `SELECT policyId, role, algorithm, bits, lifetime, repository,
		manualRollover FROM policyKey ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pk PolicyKey
		var pid, lifetime int64
		var manual int
		if err := rows.Scan(&pid, &pk.Role, &pk.Algorithm, &pk.Bits, &lifetime, &pk.Repository, &manual); err != nil {
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

func (st *State) readZones(ctx context.Context, q querier, zone string) error {
	query, args := `SELECT id, name, policyId, nextKskRoll, nextZskRoll, nextCskRoll,
		outputAdapterType, outputAdapterUri FROM zone ORDER BY name`, []any(nil)
	if zone != "" {
		query = `SELECT id, name, policyId, nextKskRoll, nextZskRoll, nextCskRoll,
		outputAdapterType, outputAdapterUri FROM zone WHERE name = ?`
		args = []any{zone}
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	byID := map[int64]*Policy{}
	for _, p := range st.Policies {
		byID[p.ID] = p
	}
	for rows.Next() {
		z := &Zone{}
		var pid, ksk, zsk, csk int64
		if err := rows.Scan(&z.ID, &z.Name, &pid, &ksk, &zsk, &csk, &z.OutputType, &z.OutputURI); err != nil {
			return err
		}
		z.NextRoll = map[Role]time.Time{KSK: unix(ksk), ZSK: unix(zsk), CSK: unix(csk)}
		z.Policy = byID[pid]
		st.Zones = append(st.Zones, z)
	}
	return rows.Err()
}

// readKeys reads the keys and their uses; with zone not "" (st.Zones
// holds that zone alone), only the keys that zone uses, with their uses by
// it.
func (st *State) readKeys(ctx context.Context, q querier, zone string) error {
	policies := map[int64]*Policy{}
	for _, p := range st.Policies {
		policies[p.ID] = p
	}
	const keyColumns = `SELECT id, locator, repository, policyId, role, state, backup, algorithm, bits, inception FROM hsmKey`
	keysQuery, dataQuery, stateQuery := keyColumns+` ORDER BY id`,
		`SELECT id, zoneId, hsmKeyId, role, keytag, dsAtParent FROM keyData ORDER BY id`,
		`SELECT keyDataId, type, state, lastChange FROM keyState`
	var args []any
	if zone != "" {
		args = []any{st.Zones[0].ID}
		keysQuery = keyColumns + ` WHERE id IN (SELECT hsmKeyId FROM keyData WHERE zoneId = ?) ORDER BY id`
		dataQuery = `SELECT id, zoneId, hsmKeyId, role, keytag, dsAtParent FROM keyData WHERE zoneId = ? ORDER BY id`
		stateQuery = `SELECT s.keyDataId, s.type, s.state, s.lastChange FROM keyState s JOIN keyData k ON k.id = s.keyDataId WHERE k.zoneId = ?`
	}
	rows, err := q.QueryContext(ctx, keysQuery, args...)
	if err != nil {
		return err
	}
	byID := map[int64]*Key{}
	for rows.Next() {
		k := &Key{}
		var pid, inception int64
		if err := rows.Scan(&k.ID, &k.Locator, &k.Repository, &pid, &k.Role, &k.State, &k.Backup,
			&k.Algorithm, &k.Bits, &inception); err != nil {
			rows.Close()
			return err
		}
		k.Locator = strings.ToLower(k.Locator)
		k.Inception = unix(inception)
		k.Policy = policies[pid]
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
	rows, err = q.QueryContext(ctx, dataQuery, args...)
	if err != nil {
		return err
	}
	uses := map[int64]*Use{}
	for rows.Next() {
		u := &Use{States: map[RecordType]RecordState{}, Changed: map[RecordType]time.Time{}}
		var id, zid, hid int64
		if err := rows.Scan(&id, &zid, &hid, &u.Role, &u.KeyTag, &u.DSAtParent); err != nil {
			rows.Close()
			return err
		}
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
	rows, err = q.QueryContext(ctx, stateQuery, args...)
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
			u.Changed[typ] = unix(last)
		}
	}
	return rows.Err()
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

func unix(n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}
