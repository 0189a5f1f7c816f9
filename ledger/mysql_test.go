package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sandbox.StopShared()
	os.Exit(code)
}

// ledgerDB is an empty database on the sandboxed MariaDB server.
func ledgerDB(t *testing.T) (*sandbox.Database, mysqlx.Server) {
	t.Helper()
	db := sandbox.TestDatabase(t, "keyguard")
	return db, mysqlx.Server{Host: "127.0.0.1", Port: db.Server.Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
}

func mysqlLedgerFor(t *testing.T, s mysqlx.Server, o Options) *Ledger {
	t.Helper()
	o.MySQL, o.Create = &s, true
	if o.LockWait == 0 {
		o.LockWait = time.Second
	}
	l, err := New(context.Background(), o)
	must(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// The ceremonies as the files keep them: open, ended once, in order.
func TestMySQLStore(t *testing.T) {
	ctx := context.Background()
	_, srv := ledgerDB(t)
	a := mysqlLedgerFor(t, srv, Options{})
	b := mysqlLedgerFor(t, srv, Options{}) // the other host
	s, err := a.Ceremonies(ctx)
	must(t, err)
	c := &Ceremony{ID: NewID("SoftHSM", time.Unix(0, 0)), Repository: "SoftHSM", Status: Open, Keys: []KeyRecord{{Locator: "aa", Role: "KSK"}}}
	must(t, s.SaveOpen(ctx, c))
	s2, err := b.Ceremonies(ctx)
	must(t, err)
	if o := s2.Open("SoftHSM"); o == nil || o.ID != c.ID {
		t.Fatalf("the other host sees open %+v", o)
	}
	c.Status = Confirmed
	must(t, s.End(ctx, c))
	must(t, s.End(ctx, c)) // again, as after a crash: recorded once
	// The other host, with a stale view, ends it too: still once.
	must(t, s2.End(ctx, c))
	s3, err := b.Ceremonies(ctx)
	must(t, err)
	if len(s3.History()) != 1 || s3.Open("SoftHSM") != nil || s3.Coverage().Covering("SoftHSM", "AA") == nil {
		t.Fatalf("history %d, open %v", len(s3.History()), s3.Open("SoftHSM"))
	}
	// The same id with another record is refused, not overwritten.
	other := *c
	other.Operator = "mallory"
	if err := a.b.(*mysqlLedger).appendHistory(ctx, &other); err == nil || !strings.Contains(err.Error(), "in the history already, with another record") {
		t.Errorf("a different record under the same id: %v", err)
	}
}

// A row damaged or edited by hand is reported, never trusted.
func TestMySQLCorruptRow(t *testing.T) {
	ctx := context.Background()
	db, srv := ledgerDB(t)
	l := mysqlLedgerFor(t, srv, Options{})
	s, err := l.Ceremonies(ctx)
	must(t, err)
	must(t, s.End(ctx, &Ceremony{ID: "x", Repository: "A", Status: Confirmed}))
	_, err = db.Query(`UPDATE keyguard_history SET doc = REPLACE(doc, '"confirmed"', '"abandoned"')`)
	must(t, err)
	_, err = l.Ceremonies(ctx)
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "table keyguard_history row x: checksum mismatch") {
		t.Fatalf("got %v", err)
	}
}

// The writers' lock spans hosts, names its holder, gives up after the
// wait, and goes with its holder's connection.
func TestMySQLLock(t *testing.T) {
	ctx := context.Background()
	db, srv := ledgerDB(t)
	a := mysqlLedgerFor(t, srv, Options{})
	var told bytes.Buffer
	b := mysqlLedgerFor(t, srv, Options{LockWait: 300 * time.Millisecond, Waiting: &told})
	unlock, err := a.Lock(ctx)
	must(t, err)
	start := time.Now()
	_, err = b.Lock(ctx)
	if time.Since(start) < 250*time.Millisecond {
		t.Error("did not wait")
	}
	if err == nil || !strings.Contains(err.Error(), "lock held by ") || !strings.Contains(err.Error(), fmt.Sprintf(" pid %d (", os.Getpid())) ||
		!strings.Contains(err.Error(), "for over 300ms") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(told.String(), "waiting for the ledger lock of "+srv.String()+", held by ") {
		t.Errorf("not told: %q", told.String())
	}
	unlock()
	unlock2, err := b.Lock(ctx)
	must(t, err)
	unlock2()

	// A holder whose connection dies (the host crashed) leaves no lock.
	_, err = a.Lock(ctx)
	must(t, err)
	_, err = db.Server.Root(fmt.Sprintf("SELECT CONCAT('KILL ', IS_USED_LOCK('ods-keyguard:%s'), ';') INTO @k; PREPARE s FROM @k; EXECUTE s;", srv.Database))
	must(t, err)
	unlock3, err := b.Lock(ctx)
	if err != nil {
		t.Fatalf("after the holder's connection died: %v", err)
	}
	unlock3()
}

// Hooks on two hosts add DS records at the same moment: all of them land,
// none twice.
func TestMySQLConcurrentDS(t *testing.T) {
	ctx := context.Background()
	_, srv := ledgerDB(t)
	hosts := []*Ledger{mysqlLedgerFor(t, srv, Options{}), mysqlLedgerFor(t, srv, Options{})}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := DSEvent{Kind: Submit, Action: Withheld, Zone: fmt.Sprintf("z%d.example", i), KeyTag: i, Fingerprint: strings.Repeat("a", 63) + fmt.Sprint(i%10), Reason: "test"}
			errs <- hosts[i%2].AddDS(ctx, e)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	book, err := hosts[0].DS(ctx)
	must(t, err)
	if len(book.Events) != 40 {
		t.Fatalf("%d events, want 40", len(book.Events))
	}
	// The same event again (a retry) is not recorded twice.
	must(t, hosts[1].b.addDS(ctx, book.Events[:3]))
	unlock, err := hosts[0].Lock(ctx)
	must(t, err)
	// The same request withheld again and again: compaction keeps its first
	// and last event, and every other entry, whatever the bound.
	for i := 0; i < 30; i++ {
		must(t, hosts[1].AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: "z0.example", KeyTag: 0,
			Fingerprint: strings.Repeat("a", 63) + "0", Reason: fmt.Sprint("test ", i)}))
	}
	book, err = hosts[0].DS(ctx)
	must(t, err)
	must(t, hosts[0].b.compactDS(ctx, 20))
	unlock()
	after, err := hosts[1].DS(ctx)
	must(t, err)
	if len(after.Events) != 41 || !sameBook(book, after) {
		t.Errorf("after compaction to 20: %d events, want 41 (40 entries, and the first of one withheld 31 times), the records read the same: %v",
			len(after.Events), sameBook(book, after))
	}
}

// A reader does not make tables; a database without them says so. Server
// trouble is one line, without the password.
func TestMySQLErrors(t *testing.T) {
	ctx := context.Background()
	_, srv := ledgerDB(t)
	o := srv
	_, err := New(ctx, Options{MySQL: &o, ReadOnly: true})
	var ni *NotInitializedError
	if !errors.As(err, &ni) || err.Error() != "ledger "+srv.String()+": no ods-keyguard tables yet: run ods-keyguard ledger init (or ledger migrate) once" {
		t.Errorf("read-only on an empty database: %v", err)
	}
	wrong := srv
	wrong.Password = "not-the-password-7"
	_, err = New(ctx, Options{MySQL: &wrong})
	if err == nil || err.Error() != fmt.Sprintf("ledger %s: access denied for user %q (wrong password, or no such user from this host)", srv, srv.User) {
		t.Errorf("wrong password: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "not-the-password-7") {
		t.Error("the password is in the message")
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	time.Sleep(20 * time.Millisecond)
	if _, err := New(tctx, Options{MySQL: &o}); err == nil || !strings.Contains(err.Error(), "no answer in time") {
		t.Errorf("past the deadline: %v", err)
	}
}

// A state_dir moves into the MySQL ledger whole and verified; run again,
// the migration changes nothing; the state_dir is refused afterwards.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	files := newLedger(t, dir)
	s, err := files.Ceremonies(ctx)
	must(t, err)
	for i, st := range []string{Confirmed, Abandoned, Confirmed} {
		must(t, s.End(ctx, &Ceremony{ID: fmt.Sprintf("c%d", i), Repository: "SoftHSM", Status: st, Prepared: time.Unix(int64(i), 0).UTC()}))
	}
	must(t, s.SaveOpen(ctx, &Ceremony{ID: "c3", Repository: "SoftHSM", Status: Open}))
	must(t, files.AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: "a.example", KeyTag: 1, Fingerprint: strings.Repeat("b", 64)}))
	must(t, files.AddDS(ctx, DSEvent{Kind: Submit, Action: Forwarded, Zone: "b.example", KeyTag: 2, Fingerprint: strings.Repeat("c", 64)}))
	_, srv := ledgerDB(t)
	to := mysqlLedgerFor(t, srv, Options{})
	rep, err := Migrate(ctx, files, to)
	must(t, err)
	if rep.Open != 1 || rep.History != 3 || rep.Events != 2 || rep.Already {
		t.Errorf("report %+v", rep)
	}
	s2, err := to.Ceremonies(ctx)
	must(t, err)
	if len(s2.History()) != 3 || s2.Open("SoftHSM") == nil || s2.LastConfirmed("SoftHSM").ID != "c2" {
		t.Errorf("migrated: %d ended, open %v", len(s2.History()), s2.Open("SoftHSM"))
	}
	// The state_dir is refused now, by writers and readers.
	for _, ro := range []bool{false, true} {
		_, err := New(ctx, Options{Dir: dir, Group: -1, ReadOnly: ro})
		var me *MigratedError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "its records were moved to the ledger "+srv.String()) {
			t.Errorf("read-only %v: %v", ro, err)
		}
	}
	// Run again (it crashed after the commit, say): nothing copied twice.
	again, err := New(ctx, Options{Dir: dir, Group: -1, LockWait: time.Second, Migrating: true})
	must(t, err)
	defer again.Close()
	rep, err = Migrate(ctx, again, to)
	must(t, err)
	if !rep.Already {
		t.Errorf("second run: %+v", rep)
	}
	// Into a ledger that holds other records: refused.
	_, srv2 := ledgerDB(t)
	other := mysqlLedgerFor(t, srv2, Options{})
	os2, err := other.Ceremonies(ctx)
	must(t, err)
	must(t, os2.End(ctx, &Ceremony{ID: "zz", Repository: "X", Status: Confirmed}))
	if _, err := Migrate(ctx, again, other); err == nil || !strings.Contains(err.Error(), "migrate only into an empty ledger") {
		t.Errorf("into a used ledger: %v", err)
	}
}

// Two hosts act on one open ceremony at once, with no lock between them
// (as on two Galera nodes): every change is a compare-and-set, so exactly
// one commit claim and one end win; the loser learns what the record is.
func TestMySQLCompareAndSet(t *testing.T) {
	ctx := context.Background()
	_, srv := ledgerDB(t)
	a := mysqlLedgerFor(t, srv, Options{})
	b := mysqlLedgerFor(t, srv, Options{})
	sa, err := a.Ceremonies(ctx)
	must(t, err)
	c := &Ceremony{ID: "c1", Repository: "R", Status: Open, Keys: []KeyRecord{{Locator: "aa"}}}
	must(t, sa.SaveOpen(ctx, c))
	// A second prepare on the other host: refused, it sees the first.
	sb, err := b.Ceremonies(ctx)
	must(t, err)
	c2 := &Ceremony{ID: "c2", Repository: "R", Status: Preparing}
	sb2, err := b.Ceremonies(ctx)
	must(t, err)
	delete(sb2.open, "R")
	delete(sb2.sums, "R")
	var ce *ConflictError
	if err := sb2.SaveOpen(ctx, c2); !errors.As(err, &ce) || ce.Current == nil || ce.Current.ID != "c1" {
		t.Fatalf("a second open ceremony: %v", err)
	}
	// Both claim the commit, many times over: one wins each round.
	for round := 0; round < 20; round++ {
		sa, err = a.Ceremonies(ctx)
		must(t, err)
		sb, err = b.Ceremonies(ctx)
		must(t, err)
		ca, cb := *sa.Open("R"), *sb.Open("R")
		ca.Status, cb.Status = Committing, RollingBack
		ca.Operator, cb.Operator = fmt.Sprint("a", round), fmt.Sprint("b", round)
		var wg sync.WaitGroup
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); ea = sa.SaveOpen(ctx, &ca) }()
		go func() { defer wg.Done(); eb = sb.SaveOpen(ctx, &cb) }()
		wg.Wait()
		if (ea == nil) == (eb == nil) {
			t.Fatalf("round %d: both or neither won: %v / %v", round, ea, eb)
		}
		loser, winner := eb, ca.Status
		if ea != nil {
			loser, winner = ea, cb.Status
		}
		if !errors.As(loser, &ce) || ce.Current == nil || ce.Current.Status != winner {
			t.Fatalf("round %d: the loser was told %v", round, loser)
		}
		// Back to open for the next round, from the winner's view.
		w := sa
		wc := ca
		if ea != nil {
			w, wc = sb, cb
		}
		wc.Status = Open
		must(t, w.SaveOpen(ctx, &wc))
	}
	// Both end it, one as confirmed, one as abandoned: one record.
	sa, _ = a.Ceremonies(ctx)
	sb, _ = b.Ceremonies(ctx)
	ca, cb := *sa.Open("R"), *sb.Open("R")
	ca.Status, cb.Status = Confirmed, Abandoned
	var wg sync.WaitGroup
	var ea, eb error
	wg.Add(2)
	go func() { defer wg.Done(); ea = sa.End(ctx, &ca) }()
	go func() { defer wg.Done(); eb = sb.End(ctx, &cb) }()
	wg.Wait()
	if (ea == nil) == (eb == nil) {
		t.Fatalf("both or neither ended it: %v / %v", ea, eb)
	}
	loser := ea
	if ea == nil {
		loser = eb
	}
	if !errors.As(loser, &ce) || ce.Ended == nil || !strings.Contains(loser.Error(), "already (another host ended it)") {
		t.Fatalf("the loser of the end was told %v", loser)
	}
	s, _ := a.Ceremonies(ctx)
	if len(s.History()) != 1 || s.Open("R") != nil {
		t.Fatalf("history %d, open %v", len(s.History()), s.Open("R"))
	}
}

// A writer makes no tables: on an empty database it says to run ledger
// init; ledger init makes them once, however many run at once.
func TestMySQLNoDDLOnOpen(t *testing.T) {
	ctx := context.Background()
	db, srv := ledgerDB(t)
	o := srv
	_, err := New(ctx, Options{MySQL: &o})
	var ni *NotInitializedError
	if !errors.As(err, &ni) {
		t.Fatalf("a writer on an empty database: %v", err)
	}
	if out, _ := db.Query("SHOW TABLES"); out != "" {
		t.Fatalf("a writer made tables: %q", out)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := New(ctx, Options{MySQL: &o, Create: true})
			if err == nil {
				l.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if out, _ := db.Query("SELECT count(*) FROM keyguard_schema"); out != "1\n" {
		t.Errorf("version rows: %q", out)
	}
	_, err = db.Query("UPDATE keyguard_schema SET version = 0")
	must(t, err)
	if _, err := New(ctx, Options{MySQL: &o}); err == nil || !strings.HasSuffix(err.Error(), "schema version 0, this ods-keyguard needs version 2: run ods-keyguard ledger init once") {
		t.Errorf("an old schema: %v", err)
	}
}

// A transaction that another host's won (1213: a deadlock, or a Galera
// certification failure), a lock wait timeout (1205) or a lost connection
// is tried again, with jittered waits, within the deadline; what still
// fails says so, and how often it was tried.
func TestMySQLRetry(t *testing.T) {
	m := &mysqlLedger{srv: mysqlx.Server{Host: "127.0.0.1", Port: 3306, User: "kg", Database: "kg"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	err := m.retry(ctx, func() error {
		n++
		if n < 3 {
			return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock; try restarting transaction"}
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("after two conflicts: %v, %d tries", err, n)
	}
	n = 0
	err = m.retry(ctx, func() error {
		n++
		return &mysql.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock; try restarting transaction"}
	})
	want := "ledger mysql://kg@127.0.0.1:3306/kg: another host wrote first (a deadlock, or a Galera certification conflict: server error 1213): retried 7 times"
	if err == nil || err.Error() != want || n != retryTries {
		t.Fatalf("always a conflict: %d tries, %v\nwant %s", n, err, want)
	}
	n = 0
	err = m.retry(ctx, func() error {
		n++
		if n == 1 {
			return mysql.ErrInvalidConn
		}
		if n == 2 {
			return &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("a lost connection, a lock wait: %v, %d tries", err, n)
	}
	// Other errors are not tried again.
	n = 0
	err = m.retry(ctx, func() error { n++; return &mysql.MySQLError{Number: 1142, Message: "INSERT command denied"} })
	if n != 1 || err == nil || strings.Contains(err.Error(), "retried") {
		t.Fatalf("a missing grant: %d tries, %v", n, err)
	}
	// The deadline ends the tries.
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	err = m.retry(short, func() error { return &mysql.MySQLError{Number: 1213, Message: "Deadlock"} })
	if time.Since(start) > 2*time.Second || err == nil || !strings.Contains(err.Error(), "another host wrote first") {
		t.Fatalf("within a short deadline: %v after %s", err, time.Since(start))
	}
}

// A writer pointed at a read-only server (a replica) is refused, saying
// so; a reader (check) goes on; ledger status reports it. A server of its
// own: read_only is global.
func TestMySQLReadOnlyServer(t *testing.T) {
	sandbox.NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb")
	ctx := context.Background()
	srv, err := sandbox.StartMariaDB(t.TempDir())
	must(t, err)
	t.Cleanup(srv.Stop)
	db, err := srv.NewDatabase("keyguard")
	must(t, err)
	s := mysqlx.Server{Host: "127.0.0.1", Port: srv.Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
	l := mysqlLedgerFor(t, s, Options{})
	st, err := l.Status(ctx)
	must(t, err)
	if !st.Writable || st.Server == nil || st.Server.Galera || st.Topology != "single server (or a primary)" || len(st.Problems) != 0 {
		t.Fatalf("a writable server: %+v", st)
	}
	_, err = srv.Root("SET GLOBAL read_only = 1")
	must(t, err)
	_, err = New(ctx, Options{MySQL: &s})
	var ro *ReadOnlyServerError
	if !errors.As(err, &ro) || !strings.Contains(err.Error(), ": the server is read-only (@@read_only is 1): a writer needs the primary") {
		t.Fatalf("a writer on a read-only server: %v", err)
	}
	r, err := New(ctx, Options{MySQL: &s, ReadOnly: true})
	must(t, err)
	r.Close()
	i, err := New(ctx, Options{MySQL: &s, Inspect: true})
	must(t, err)
	defer i.Close()
	st, err = i.Status(ctx)
	must(t, err)
	if st.Writable || st.Topology != "read-only server (a replica?)" || len(st.Problems) != 1 {
		t.Fatalf("a read-only server: %+v", st)
	}
}

// A claim is live while its process runs (this host) or until its
// deadline (another host); on state_dir, whose flock the writer holds, a
// claim found is always dead.
func TestClaimLive(t *testing.T) {
	_, srv := ledgerDB(t)
	l := mysqlLedgerFor(t, srv, Options{})
	s, err := l.Ceremonies(context.Background())
	must(t, err)
	soon := time.Now().Add(time.Minute)
	for _, tt := range []struct {
		name  string
		claim *Claim
		live  bool
	}{
		{"none", nil, false},
		{"this process", &Claim{Host: host(), PID: os.Getpid(), Until: soon}, false},
		{"a live process of this host", &Claim{Host: host(), PID: os.Getppid(), Until: soon}, true},
		{"a dead process of this host", &Claim{Host: host(), PID: 1 << 30, Until: soon}, false},
		{"a live process past its deadline", &Claim{Host: host(), PID: os.Getppid(), Until: time.Now().Add(-time.Hour)}, false},
		{"another host, within its deadline", &Claim{Host: "elsewhere", PID: 1, Until: soon}, true},
		{"another host, within the clocks' skew", &Claim{Host: "elsewhere", PID: 1, Until: time.Now().Add(-10 * time.Second)}, true},
		{"another host, past its deadline", &Claim{Host: "elsewhere", PID: 1, Until: time.Now().Add(-time.Minute)}, false},
	} {
		if got := s.Live(&Ceremony{Claim: tt.claim}); got != tt.live {
			t.Errorf("%s: live %v, want %v", tt.name, got, tt.live)
		}
	}
	f := newLedger(t, t.TempDir())
	fs, err := f.Ceremonies(context.Background())
	must(t, err)
	if fs.Live(&Ceremony{Claim: &Claim{Host: "elsewhere", PID: 1, Until: soon}}) {
		t.Error("state_dir: a claim found under the flock is live")
	}
}
