package enforcer

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sandbox.StopShared()
	os.Exit(code)
}

// mariaDB is a database on the sandboxed MariaDB server, with the
// enforcer's schema loaded.
func mariaDB(t *testing.T) *sandbox.Database {
	t.Helper()
	db := sandbox.TestDatabase(t, "kasp")
	must(t, db.LoadEnforcerSchema())
	return db
}

func mysqlStore(db *sandbox.Database) Datastore {
	return Datastore{MySQL: &MySQL{Host: "127.0.0.1", Port: db.Server.Port, Database: db.Name, Username: db.User, Password: secret.Value(db.Password)}}
}

func copyTables(t *testing.T, path string, db *sandbox.Database) {
	t.Helper()
	must(t, sandbox.CopyKasp(path, db))
}

// dump writes a State in a form two reads can be compared by.
func dump(st *State) string {
	var b strings.Builder
	for _, p := range st.Policies {
		fmt.Fprintf(&b, "policy %d %s shared=%v ds=%v prop=%v reg=%v ttl=%v\n", p.ID, p.Name, p.KeysShared, p.ParentDSTTL, p.ParentPropagationDelay, p.ParentRegistrationDelay, p.KeyTTL)
		for _, k := range p.Keys {
			fmt.Fprintf(&b, "  %+v\n", k)
		}
	}
	for _, z := range st.Zones {
		fmt.Fprintf(&b, "zone %d %s %s %s %v policy=%s\n", z.ID, z.Name, z.OutputType, z.OutputURI, z.NextRoll, z.Policy.Name)
	}
	for _, k := range st.Keys {
		fmt.Fprintf(&b, "key %d %s %s %v %v %v %d/%d %v policy=%s\n", k.ID, k.Locator, k.Repository, k.Role, k.State, k.Backup, k.Algorithm, k.Bits, k.Inception, k.Policy.Name)
		for _, u := range k.Uses {
			var states []string
			for typ, s := range u.States {
				states = append(states, fmt.Sprintf("%v=%v@%d", typ, s, u.Changed[typ].Unix()))
			}
			sort.Strings(states)
			fmt.Fprintf(&b, "  use %s %v tag=%d ds=%v %v\n", u.Zone.Name, u.Role, u.KeyTag, u.DSAtParent, states)
		}
	}
	return b.String()
}

// The same enforcer state gives the same answers from SQLite and MySQL.
func TestMySQLSameAnswers(t *testing.T) {
	path := newDB(t)
	db := mariaDB(t)
	copyTables(t, path, db)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lite, err := ReadDatastore(ctx, Datastore{SQLite: path})
	must(t, err)
	my, err := ReadDatastore(ctx, mysqlStore(db))
	must(t, err)
	if a, b := dump(lite), dump(my); a != b {
		t.Errorf("SQLite:\n%s\nMySQL:\n%s", a, b)
	}
	if len(my.Keys) != 2 || my.Keys[0].Locator != "aabb01" {
		t.Errorf("keys %+v", my.Keys)
	}
}

// One zone's read gives the same answers from SQLite and MySQL.
func TestMySQLSameZone(t *testing.T) {
	path := newDB(t)
	addZone(t, path)
	db := mariaDB(t)
	copyTables(t, path, db)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, zone := range []string{"example.com", "other.example", "absent.example"} {
		lite, err := ReadDatastoreZone(ctx, Datastore{SQLite: path}, zone)
		must(t, err)
		my, err := ReadDatastoreZone(ctx, mysqlStore(db), zone)
		must(t, err)
		if a, b := dump(lite), dump(my); a != b {
			t.Errorf("%s: SQLite:\n%s\nMySQL:\n%s", zone, a, b)
		}
	}
}

// The read is one snapshot: a key the enforcer adds while it runs is not
// half in it, and the read writes nothing.
func TestMySQLSnapshot(t *testing.T) {
	path := newDB(t)
	db := mariaDB(t)
	copyTables(t, path, db)
	afterSnapshot = func() {
		if _, err := db.Query(`INSERT INTO hsmKey (policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup)
			VALUES (1, 'eeff03', 1, 256, 13, 2, 1764000200, 0, 1, 'SoftHSM', 0)`); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterSnapshot = nil }()
	st, err := ReadDatastore(context.Background(), mysqlStore(db))
	must(t, err)
	if len(st.Keys) != 2 {
		t.Errorf("read %d keys: the snapshot saw a later write", len(st.Keys))
	}
	afterSnapshot = nil
	st, err = ReadDatastore(context.Background(), mysqlStore(db))
	must(t, err)
	if len(st.Keys) != 3 {
		t.Errorf("next read: %d keys, want 3", len(st.Keys))
	}
}

// Every failure is one plain line within the deadline, never the password.
func TestMySQLErrors(t *testing.T) {
	db := mariaDB(t)
	good := mysqlStore(db)
	name := func(ds Datastore) string { return "enforcer database " + ds.String() + ": " }
	wrongPW := good
	m := *good.MySQL
	m.Password = "wrong-password-42"
	wrongPW.MySQL = &m
	noDB := good
	m2 := *good.MySQL
	m2.Database = "nothere"
	noDB.MySQL = &m2
	// A port where nothing listens: a server that is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	downPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	down := good
	m3 := *good.MySQL
	m3.Port = downPort
	down.MySQL = &m3
	// A server that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hung := good
	m4 := *good.MySQL
	m4.Port = hang.Addr().(*net.TCPAddr).Port
	hung.MySQL = &m4
	// A database that is not the enforcer's.
	other, err := db.Server.NewDatabase("other")
	must(t, err)
	defer other.Drop()
	notODS := mysqlStore(other)

	for _, c := range []struct {
		ds   Datastore
		want string
	}{
		{wrongPW, `access denied for user "` + db.User + `" (wrong password, or no such user from this host)`},
		{noDB, `user "` + db.User + `" may not use database "nothere" (a GRANT is missing)`},
		{down, "server down: connection refused"},
		{hung, "no answer in time: context deadline exceeded"},
		{notODS, "not an OpenDNSSEC 2 enforcer database (Table '" + other.Name + ".hsmKey' doesn't exist)"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		start := time.Now()
		_, err := ReadDatastore(ctx, c.ds)
		cancel()
		if err == nil || err.Error() != name(c.ds)+c.want {
			t.Errorf("got %v\nwant %s%s", err, name(c.ds), c.want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %v", c.want, d)
		}
		if err != nil && (strings.Contains(err.Error(), db.Password) || strings.Contains(err.Error(), "wrong-password-42")) {
			t.Errorf("the password is in %q", err)
		}
	}
}
