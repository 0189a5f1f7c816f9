package enforcer

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

const schema = "/usr/share/opendnssec/schema.sqlite"

// newDB makes a kasp.db from the enforcer's own schema, with one policy, a
// zone, a KSK in use and a ZSK in the pool.
func newDB(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile(schema)
	if err != nil {
		sandbox.Missing(t, "needs the enforcer's schema: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kasp.db")
	db, err := sql.Open("sqlite", path)
	must(t, err)
	defer db.Close()
	for _, stmt := range []string{string(text),
		`INSERT INTO databaseVersion (version) VALUES (1)`,
		`INSERT INTO policy (id, name, description, passthrough, signaturesResign, signaturesRefresh, signaturesJitter,
			signaturesInceptionOffset, signaturesValidityDefault, signaturesValidityDenial, signaturesValidityKeyset, signaturesMaxZoneTtl,
			denialType, denialOptout, denialTtl, denialResalt, denialAlgorithm, denialIterations, denialSaltLength, denialSalt, denialSaltLastChange,
			keysTtl, keysRetireSafety, keysPublishSafety, keysShared, keysPurgeAfter, zonePropagationDelay, zoneSoaTtl, zoneSoaMinimum,
			zoneSoaSerial, parentRegistrationDelay, parentPropagationDelay, parentDsTtl, parentSoaTtl, parentSoaMinimum)
			VALUES (1, 'test', '', 0, 7200, 259200, 43200, 3600, 1209600, 1209600, 0, 60, 0, 0, 0, 0, 0, 0, 0, '', 0,
			60, 60, 60, 1, 1209600, 60, 60, 60, 0, 120, 60, 3600, 60, 60)`,
		`INSERT INTO policyKey (id, policyId, role, algorithm, bits, lifetime, repository, standby, manualRollover, rfc5011, minimize)
			VALUES (1, 1, 1, 13, 256, 63072000, 'SoftHSM', 0, 0, 0, 0), (2, 1, 2, 13, 256, 31536000, 'SoftHSM', 0, 1, 0, 0)`,
		`INSERT INTO zone (id, policyId, name, signconfNeedsWriting, signconfPath, nextChange, ttlEndDs, ttlEndDk, ttlEndRs,
			rollKskNow, rollZskNow, rollCskNow, inputAdapterType, inputAdapterUri, outputAdapterType, outputAdapterUri,
			nextKskRoll, nextZskRoll, nextCskRoll)
			VALUES (1, 1, 'example.com', 0, '/s', 0, 0, 0, 0, 0, 0, 0, 'File', '/in', 'File', '/out/example.com', 1795776000, 0, 0)`,
		`INSERT INTO hsmKey (id, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup)
			VALUES (1, 1, 'AABB01', 2, 256, 13, 1, 1764000000, 0, 1, 'SoftHSM', 3),
			       (2, 1, 'ccdd02', 1, 256, 13, 2, 1764000100, 0, 1, 'SoftHSM', 1)`,
		`INSERT INTO keyData (id, zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke, standby,
			activeZsk, publish, activeKsk, dsAtParent, keytag, minimize)
			VALUES (1, 1, 1, 13, 1764000000, 1, 0, 0, 0, 0, 1, 1, 3, 12345, 0)`,
		`INSERT INTO keyState (keyDataId, type, state, lastChange, minimize, ttl)
			VALUES (1, 0, 2, 1764000500, 0, 60), (1, 2, 1, 1764000600, 0, 60), (1, 3, 2, 1764000600, 0, 60)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}
	return path
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The model as the enforcer's tables say it: keys, uses, states, policies.
func TestReadModel(t *testing.T) {
	path := newDB(t)
	st, err := ReadDatastore(context.Background(), Datastore{SQLite: path})
	must(t, err)
	if len(st.Policies) != 1 || len(st.Zones) != 1 || len(st.Keys) != 2 {
		t.Fatalf("got %d policies, %d zones, %d keys", len(st.Policies), len(st.Zones), len(st.Keys))
	}
	p := st.Policies[0]
	if p.Name != "test" || !p.KeysShared || p.ParentDSTTL != time.Hour || p.ParentRegistrationDelay != 2*time.Minute || p.KeyTTL != time.Minute {
		t.Errorf("policy %+v", p)
	}
	if len(p.Keys) != 2 || p.Keys[0].Role != KSK || p.Keys[0].Lifetime != 2*365*24*time.Hour || !p.Keys[1].ManualRollover {
		t.Errorf("policy keys %+v", p.Keys)
	}
	z := st.Zones[0]
	if z.Name != "example.com" || z.Policy != p || z.OutputURI != "/out/example.com" || z.NextRoll[KSK].Unix() != 1795776000 || !z.NextRoll[ZSK].IsZero() {
		t.Errorf("zone %+v", z)
	}
	ksk, zsk := st.Keys[0], st.Keys[1]
	if ksk.Locator != "aabb01" || ksk.State != Private || ksk.Backup != BackupDone || ksk.Policy != p || ksk.Usage() != UseInUse {
		t.Errorf("KSK %+v (%s)", ksk, ksk.Usage())
	}
	if zsk.Usage() != UsePool || zsk.Backup != BackupRequired || len(zsk.Uses) != 0 {
		t.Errorf("ZSK %+v", zsk)
	}
	u := ksk.Uses[0]
	if u.Zone != z || u.KeyTag != 12345 || u.DSAtParent != DSSeen || u.States[RecordDNSKEY] != Rumoured ||
		u.States[RecordDS] != Omnipresent || u.Changed[RecordDS].Unix() != 1764000500 || !u.Live() {
		t.Errorf("use %+v", u)
	}
	if zs := ksk.Zones(); len(zs) != 1 || zs[0] != "example.com" {
		t.Errorf("zones %v", zs)
	}
}

// A database the enforcer keeps locked is tried until the deadline, then
// reported as locked, in time.
func TestLockedUntilTheDeadline(t *testing.T) {
	path := newDB(t)
	holder, err := sql.Open("sqlite", path)
	must(t, err)
	defer holder.Close()
	conn, err := holder.Conn(context.Background())
	must(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE; UPDATE hsmKey SET rev = rev WHERE id = 1")
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = ReadDatastore(ctx, Datastore{SQLite: path})
	var le *LockedError
	// Held by this process, which is no enforcer: not named one.
	if !errors.As(err, &le) || !strings.HasSuffix(err.Error(), "locked by another process (which one cannot be told; the enforcer holds the write lock while it makes keys); still locked after 0.7 s") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 1200*time.Millisecond {
		t.Errorf("took %v for a 700ms deadline", d)
	}
	conn.ExecContext(context.Background(), "COMMIT")
	if _, err := ReadDatastore(context.Background(), Datastore{SQLite: path}); err != nil {
		t.Errorf("after the lock: %v", err)
	}
}

func TestPlainErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notdb")
	must(t, os.WriteFile(notDB, []byte("opendnssec_conf = \"x\"\n"+strings.Repeat("x", 2000)), 0o600))
	empty := filepath.Join(dir, "empty.db")
	db, err := sql.Open("sqlite", empty)
	must(t, err)
	_, err = db.Exec("CREATE TABLE other (x)")
	must(t, err)
	must(t, db.Close())
	for path, want := range map[string]string{
		filepath.Join(dir, "none"): "no such file or directory",
		dir:                        "is a directory, not a database file",
		notDB:                      "not an SQLite database",
		empty:                      "not an OpenDNSSEC 2 enforcer database (no such table: hsmKey)",
	} {
		_, err := ReadDatastore(context.Background(), Datastore{SQLite: path})
		if err == nil || err.Error() != "enforcer database "+path+": "+want {
			t.Errorf("%s: got %v, want %s", path, err, want)
		}
	}
}

// addZone adds a second zone, other.example, with a key of its own, to a
// database newDB made.
func addZone(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	must(t, err)
	defer db.Close()
	for _, stmt := range []string{
		`INSERT INTO zone (id, policyId, name, signconfNeedsWriting, signconfPath, nextChange, ttlEndDs, ttlEndDk, ttlEndRs,
			rollKskNow, rollZskNow, rollCskNow, inputAdapterType, inputAdapterUri, outputAdapterType, outputAdapterUri,
			nextKskRoll, nextZskRoll, nextCskRoll)
			VALUES (2, 1, 'other.example', 0, '/s2', 0, 0, 0, 0, 0, 0, 0, 'File', '/in2', 'File', '/out/other.example', 0, 0, 0)`,
		`INSERT INTO hsmKey (id, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup)
			VALUES (3, 1, 'eeff03', 2, 256, 13, 2, 1764000200, 0, 1, 'SoftHSM', 1)`,
		`INSERT INTO keyData (id, zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke, standby,
			activeZsk, publish, activeKsk, dsAtParent, keytag, minimize)
			VALUES (2, 2, 3, 13, 1764000200, 2, 0, 0, 0, 1, 1, 0, 0, 4242, 0)`,
		`INSERT INTO keyState (keyDataId, type, state, lastChange, minimize, ttl) VALUES (2, 1, 1, 1764000700, 0, 60)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}
}

// One zone's read holds that zone, its keys and their uses by it, and the
// policies: nothing of the other zones; a zone the enforcer lacks reads
// as no zone.
func TestReadZone(t *testing.T) {
	path := newDB(t)
	addZone(t, path)
	ctx := context.Background()
	st, err := ReadDatastoreZone(ctx, Datastore{SQLite: path}, "other.example")
	must(t, err)
	if len(st.Zones) != 1 || st.Zones[0].Name != "other.example" || len(st.Keys) != 1 || len(st.Policies) != 1 {
		t.Fatalf("got %d zones, %d keys, %d policies", len(st.Zones), len(st.Keys), len(st.Policies))
	}
	k := st.Keys[0]
	if k.Locator != "eeff03" || len(k.Uses) != 1 || k.Uses[0].KeyTag != 4242 || k.Uses[0].States[RecordRRSIG] != Rumoured || k.Policy != st.Policies[0] {
		t.Errorf("key %+v, uses %+v", k, k.Uses)
	}
	all, err := ReadDatastore(ctx, Datastore{SQLite: path})
	must(t, err)
	one, err := ReadDatastoreZone(ctx, Datastore{SQLite: path}, "example.com")
	must(t, err)
	if len(all.Zones) != 2 || len(one.Keys) != 1 || one.Keys[0].Locator != "aabb01" || len(one.Zones[0].Keys) != 1 {
		t.Errorf("example.com alone: %d keys; the whole: %d zones", len(one.Keys), len(all.Zones))
	}
	none, err := ReadDatastoreZone(ctx, Datastore{SQLite: path}, "absent.example")
	must(t, err)
	if len(none.Zones) != 0 || len(none.Keys) != 0 {
		t.Errorf("absent zone: %d zones, %d keys", len(none.Zones), len(none.Keys))
	}
}
