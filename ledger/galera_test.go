package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// BenchmarkGaleraRaces runs the races of two hosts on two nodes of a real
// 3-node Galera cluster, b.N rounds (make it 50: -benchtime=50x): both claim
// one ceremony's commit at the same moment (exactly one may win, every
// round), both end it (one record), and 32 DS records are added at once
// through two nodes (none lost, none twice). It fails at the first round
// that breaks one of these; its figure is the time of a round.
func BenchmarkGaleraRaces(b *testing.B) {
	sandbox.NeedTools(b, "mariadbd", "mariadb-install-db", "mariadb", "rsync", "wsrep_sst_rsync")
	dir, err := os.MkdirTemp("", "keyguard-galera")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	g, err := sandbox.StartGalera(dir, 3)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	db, err := g.Nodes[0].NewDatabase("keyguard")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	open := func(node int, create bool) *Ledger {
		s := mysqlx.Server{Host: "127.0.0.1", Port: g.Nodes[node].Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
		l, err := New(ctx, Options{MySQL: &s, Create: create, LockWait: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	open(0, true).Close()
	a, bb := open(0, false), open(1, false)
	defer a.Close()
	defer bb.Close()
	if !a.b.(*mysqlLedger).info.Galera {
		b.Fatal("node 1 is not a Galera node")
	}
	events := 0
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		id := fmt.Sprintf("round-%d", round)
		sa, err := a.Ceremonies(ctx)
		must(b, err)
		must(b, sa.SaveOpen(ctx, &Ceremony{ID: id, Repository: "R", Status: Open, Keys: []KeyRecord{{Locator: "aa"}}}))
		sa, err = a.Ceremonies(ctx)
		must(b, err)
		sb, err := bb.Ceremonies(ctx)
		must(b, err)
		if sb.Open("R") == nil || sb.Open("R").ID != id {
			b.Fatalf("round %d: node 2 does not read node 1's write (wsrep_sync_wait)", round)
		}
		ca, cb := *sa.Open("R"), *sb.Open("R")
		ca.Status, cb.Status = Committing, Committing
		ca.Claim, cb.Claim = NewClaim(ctx), &Claim{Host: "b", PID: 2, Until: time.Now().Add(time.Minute)}
		var wg sync.WaitGroup
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); ea = sa.SaveOpen(ctx, &ca) }()
		go func() { defer wg.Done(); eb = sb.SaveOpen(ctx, &cb) }()
		wg.Wait()
		if (ea == nil) == (eb == nil) {
			b.Fatalf("round %d: both or neither claimed the commit: %v / %v", round, ea, eb)
		}
		var ce *ConflictError
		if loser := errors.Join(ea, eb); !errors.As(loser, &ce) {
			b.Fatalf("round %d: the loser was not told of a conflict: %v", round, loser)
		}
		// Both end it: one as confirmed, one as abandoned (a stale view).
		ca.Status, cb.Status = Confirmed, Abandoned
		wg.Add(2)
		go func() { defer wg.Done(); ea = sa.End(ctx, &ca) }()
		go func() { defer wg.Done(); eb = sb.End(ctx, &cb) }()
		wg.Wait()
		if ea == nil && eb == nil {
			b.Fatalf("round %d: both ended it", round)
		}
		if ea != nil && eb != nil {
			b.Fatalf("round %d: neither ended it: %v / %v", round, ea, eb)
		}
		// 32 hooks at once, 16 through each node.
		errs := make(chan error, 32)
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				l := a
				if i%2 == 1 {
					l = bb
				}
				errs <- l.AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: fmt.Sprintf("z%d-%d.example", round, i), KeyTag: i,
					Fingerprint: strings.Repeat("a", 64), Reason: "bench"})
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatalf("round %d: a hook's record: %v", round, err)
			}
		}
		events += 32
		book, err := bb.DS(ctx)
		must(b, err)
		if len(book.Events) != events {
			b.Fatalf("round %d: %d DS records, want %d", round, len(book.Events), events)
		}
	}
	s, err := a.Ceremonies(ctx)
	must(b, err)
	if len(s.History()) != b.N {
		b.Fatalf("%d ceremonies in the history, want %d", len(s.History()), b.N)
	}
}

// TestGaleraLogNoFork appends to one log through the three nodes of a real
// Galera cluster at once, where GET_LOCK is node-local and nothing but the
// log's keys orders the writers: the log comes out one chain, every record
// in it once, none lost, none forked.
func TestGaleraLogNoFork(t *testing.T) {
	sandbox.NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb", "rsync", "wsrep_sst_rsync")
	dir, err := os.MkdirTemp("", "keyguard-galera")
	must(t, err)
	defer os.RemoveAll(dir)
	g, err := sandbox.StartGalera(dir, 3)
	must(t, err)
	defer g.Stop()
	db, err := g.Nodes[0].NewDatabase("keyguard")
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	open := func(node int, create bool) *Ledger {
		s := mysqlx.Server{Host: "127.0.0.1", Port: g.Nodes[node].Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
		l, err := New(ctx, Options{MySQL: &s, Create: create, LockWait: time.Second})
		must(t, err)
		return l
	}
	open(0, true).Close()
	nodes := []*Ledger{open(0, false), open(1, false), open(2, false)}
	for _, l := range nodes {
		defer l.Close()
	}
	const writers, each = 6, 5 // per node
	var wg sync.WaitGroup
	errs := make(chan error, 3*writers*each*2)
	for n, l := range nodes {
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(n, w int, l *Ledger) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := l.Append(ctx, "test", map[string]string{"writer": fmt.Sprintf("%d-%d-%d", n, w, i)})
					errs <- err
					errs <- l.AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: fmt.Sprintf("z%d-%d-%d.example", n, w, i),
						Fingerprint: strings.Repeat("a", 64), Reason: "fork test"})
				}
			}(n, w, l)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an append: %v", err)
		}
	}
	rep, err := nodes[1].Verify(ctx)
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatalf("the log does not verify: %v", rep.Problems)
	}
	want := uint64(1 + 2*3*writers*each) // the first entry, then every record
	if rep.Entries != want {
		t.Fatalf("%d entries, want %d", rep.Entries, want)
	}
	stored, err := nodes[2].b.readLog(ctx, 1, 0)
	must(t, err)
	seen := map[string]int{}
	for _, s := range stored {
		var e Entry
		must(t, json.Unmarshal(s.Body, &e))
		var p map[string]any
		json.Unmarshal(e.Payload, &p)
		key := fmt.Sprint(p["writer"], p["zone"])
		seen[key]++
		if seen[key] > 1 && e.Kind != KindBegun {
			t.Errorf("entry %d: %s twice", e.Seq, key)
		}
	}
}
