package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// publishRecords exercises one ledger's publish records: per zone, in
// order, bounded to the newest, every zone at once.
func publishRecords(t *testing.T, l *Ledger) {
	t.Helper()
	ctx := context.Background()
	must(t, l.AddPublish(ctx, PublishRecord{Zone: "Example.COM.", Action: PublishHeld, Serial: 7, By: "signer",
		Keys: []PublishKey{{KeyTag: 1234, Algorithm: 13, Locator: "aa", Reason: "in no confirmed backup ceremony"}}}))
	must(t, l.AddPublish(ctx, PublishRecord{Zone: "example.com", Action: PublishPublished, Serial: 7, By: "backup done"},
		PublishRecord{Zone: "other.example", Action: PublishRefused, Serial: 1, By: "signer", Findings: []string{"error: x"}}))
	recs, err := l.Publishes(ctx, "EXAMPLE.com")
	must(t, err)
	if len(recs) != 2 || recs[0].Action != PublishHeld || recs[1].Action != PublishPublished || recs[0].ID == "" || recs[0].Host == "" ||
		len(recs[0].Keys) != 1 || recs[0].Keys[0].Locator != "aa" {
		t.Fatalf("example.com: %+v", recs)
	}
	all, err := l.Publishes(ctx, "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("every zone: %d records", len(all))
	}
	none, err := l.Publishes(ctx, "absent.example")
	must(t, err)
	if len(none) != 0 {
		t.Errorf("absent zone: %+v", none)
	}
	// The bound: the newest maxPublishRecords of a zone stay.
	var many []PublishRecord
	start := time.Now().UTC()
	for i := range maxPublishRecords + 5 {
		many = append(many, PublishRecord{Zone: "busy.example", Action: PublishPublished, Serial: uint32(i + 1), By: "signer",
			Time: start.Add(time.Duration(i) * time.Millisecond)})
	}
	must(t, l.AddPublish(ctx, many...))
	recs, err = l.Publishes(ctx, "busy.example")
	must(t, err)
	if len(recs) != maxPublishRecords || recs[0].Serial != 6 || recs[len(recs)-1].Serial != maxPublishRecords+5 {
		t.Errorf("bounded: %d records, from serial %d", len(recs), recs[0].Serial)
	}
}

func TestPublishRecordsFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l := newLedger(t, dir)
	ctx := context.Background()
	// Nothing recorded yet: nothing to read, no folder made by reading.
	recs, err := l.Publishes(ctx, "")
	must(t, err)
	if len(recs) != 0 {
		t.Fatalf("%+v", recs)
	}
	publishRecords(t, l)
}

func TestPublishRecordsMySQL(t *testing.T) {
	_, srv := ledgerDB(t)
	publishRecords(t, mysqlLedgerFor(t, srv, Options{}))
}

// A ledger made before the gate says what adds its table.
func TestPublishRecordsMySQLBeforeTheGate(t *testing.T) {
	db, srv := ledgerDB(t)
	l := mysqlLedgerFor(t, srv, Options{})
	if _, err := db.Query("DROP TABLE keyguard_publish"); err != nil {
		t.Fatal(err)
	}
	err := l.AddPublish(context.Background(), PublishRecord{Zone: "example.com", Action: PublishPublished, By: "signer"})
	if err == nil || !strings.Contains(err.Error(), "run ods-keyguard ledger init once (it adds it)") {
		t.Fatalf("got %v", err)
	}
	must(t, l.Init(context.Background()))
	must(t, l.AddPublish(context.Background(), PublishRecord{Zone: "example.com", Action: PublishPublished, By: "signer"}))
}

// ledger migrate takes the publish records along.
func TestMigratePublishRecords(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	src := newLedger(t, dir)
	for i := range 3 {
		must(t, src.AddPublish(ctx, PublishRecord{Zone: fmt.Sprintf("z%d.example", i), Action: PublishPublished, Serial: 1, By: "signer"}))
	}
	_, srv := ledgerDB(t)
	dst := mysqlLedgerFor(t, srv, Options{})
	if _, err := Migrate(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	recs, err := dst.Publishes(ctx, "")
	must(t, err)
	if len(recs) != 3 {
		t.Errorf("migrated %d publish records, want 3", len(recs))
	}
}
