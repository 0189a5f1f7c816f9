package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
	// Every publish record, and every drop at the bound, is in the chained
	// log, so verify finds the records and the log agreeing.
	rep, err := l.Verify(ctx)
	must(t, err)
	if len(rep.Problems) != 0 {
		t.Errorf("verify after the bound: %+v", rep.Problems)
	}
	stored, err := l.b.readLog(ctx, 1, 0)
	must(t, err)
	var published, dropped int
	for _, s := range stored {
		var e Entry
		must(t, json.Unmarshal(s.Body, &e))
		switch e.Kind {
		case KindPublish:
			published++
		case KindPublishDropped:
			var c compactedRecord
			must(t, json.Unmarshal(e.Payload, &c))
			dropped += len(c.Dropped)
		}
	}
	if published != 3+maxPublishRecords+5 || dropped != 5 {
		t.Errorf("log: %d publish entries, %d dropped, want %d and 5", published, dropped, 3+maxPublishRecords+5)
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

// A publish record edited or removed by hand is a problem ledger verify
// names: the log holds what the gate decided.
func TestPublishRecordsEditedByHand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l := newLedger(t, dir)
	ctx := context.Background()
	must(t, l.AddPublish(ctx, PublishRecord{Zone: "example.com", Action: PublishHeld, Serial: 7, By: "signer"},
		PublishRecord{Zone: "example.com", Action: PublishPublished, Serial: 8, By: "signer"}))
	file := filepath.Join(dir, publishDir, "example.com.json")
	data, err := os.ReadFile(file)
	must(t, err)
	var recs []PublishRecord
	must(t, decode(file, data, publishFormat, &recs))
	// Edited with care (the checksum made anew): only the log can tell.
	rewrite := func(recs []PublishRecord) {
		t.Helper()
		b, err := encode(publishFormat, recs)
		must(t, err)
		must(t, os.WriteFile(file, b, 0o640))
	}
	edited := append([]PublishRecord(nil), recs...)
	edited[0].Action = PublishPublished
	rewrite(edited)
	rep, err := l.Verify(ctx)
	must(t, err)
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Record, "publish record "+recs[0].ID) {
		t.Fatalf("edited: %+v", rep.Problems)
	}
	// Removed: the log still names it.
	rewrite(recs[1:])
	rep, err = l.Verify(ctx)
	must(t, err)
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].What, "removed by hand") {
		t.Fatalf("removed: %+v", rep.Problems)
	}
	// Put back as the gate wrote it: nothing to say.
	rewrite(recs)
	rep, err = l.Verify(ctx)
	must(t, err)
	if len(rep.Problems) != 0 {
		t.Fatalf("restored: %+v", rep.Problems)
	}
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
