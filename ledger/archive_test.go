package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// archiveLifecycle: a ceremony, DS events, publish records and enough
// other entries for state_dir's segments; archived; the live log verifies
// from the cut, and with the archive from entry 1; the ceremony exports
// from the archive; a record edited by hand, an archive changed, a live
// log cut without an archived entry, are named; a run stopped before the
// drop is finished by the next; a second archive follows the first.
func archiveLifecycle(t *testing.T, l *Ledger, vkey string, rewrite func(c *Ceremony)) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c := writeSome(t, l)
	must(t, l.AddPublish(ctx, PublishRecord{Zone: "example.com", Action: PublishPublished, Serial: 1, By: "signer"}))
	var filler []any
	for i := range 2100 {
		filler = append(filler, map[string]any{"n": i})
	}
	must(t, l.AppendAll(ctx, KindPrunePool, filler))
	before, err := l.Verify(ctx)
	must(t, err)
	if before.Status() != 0 {
		t.Fatalf("before: %+v", before)
	}
	// Nothing written before a moment long past.
	rep, err := l.Archive(ctx, time.Now().Add(-time.Hour), filepath.Join(dir, "none.log"))
	must(t, err)
	if rep.Archived != 0 || !strings.Contains(rep.Reason, "no entry to archive was written before") {
		t.Fatalf("nothing: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.log")); !os.IsNotExist(err) {
		t.Errorf("an archive of nothing was written: %v", err)
	}
	// Never over a file: nothing done.
	a1 := filepath.Join(dir, "a1.log")
	must(t, os.WriteFile(a1, []byte("kept\n"), 0o640))
	if _, err := l.Archive(ctx, time.Now().Add(time.Hour), a1); err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("over a file: %v", err)
	}
	if b, _ := os.ReadFile(a1); string(b) != "kept\n" {
		t.Errorf("the file was written over: %q", b)
	}
	must(t, os.Remove(a1))
	rep, err = l.Archive(ctx, time.Now().Add(time.Hour), a1)
	must(t, err)
	if rep.Archived < 2048 || rep.From != 1 || rep.Entry != before.Entries+1 || rep.Live != rep.Entry-rep.Through {
		t.Fatalf("archived: %+v (log of %d)", rep, before.Entries)
	}
	live, err := l.Verify(ctx)
	must(t, err)
	if live.Status() != 0 || live.Archived != rep.Through || live.Entries != rep.Entry || live.Signed != rep.Entry {
		t.Fatalf("live: %+v", live)
	}
	full, err := l.Verify(ctx, a1)
	must(t, err)
	if full.Status() != 0 || full.Archived != 0 || full.Entries != rep.Entry || len(full.Archives) != 1 || full.Checkpoints <= live.Checkpoints {
		t.Fatalf("with the archive: %+v", full)
	}
	// The head goes on from the cut: a checkpoint signs it, and status
	// reads it.
	cp, err := l.Checkpoint(ctx)
	must(t, err)
	if cp.Size != rep.Entry || cp.Origin != before.Origin {
		t.Errorf("checkpoint after the archive: %+v", cp)
	}
	// The ceremony's entries are in the archive: exported from it.
	if _, err := l.Export(ctx, c.ID); err == nil || !strings.Contains(err.Error(), "--archive FILE") {
		t.Errorf("export without the archive: %v", err)
	}
	x, err := l.Export(ctx, c.ID, a1)
	must(t, err)
	b, err := json.Marshal(x)
	must(t, err)
	if _, err := VerifyExport(bytes.NewReader(b), []string{vkey}); err != nil {
		t.Errorf("the export from the archive: %v", err)
	}
	// A ceremony edited by hand after its entries were archived: the
	// archived entry's checksums name it.
	s, err := l.Ceremonies(ctx)
	must(t, err)
	h := s.Recorded(c.ID)
	edited := *h
	edited.EndOperator = "mallory"
	rewrite(&edited)
	bad, err := l.Verify(ctx)
	must(t, err)
	if bad.Status() != 1 || !strings.Contains(bad.Problems[0].What, "archiving the entries before it") || *bad.Problems[0].Entry != rep.Entry {
		t.Fatalf("edited: %+v", bad.Problems)
	}
	rewrite(h)
	// An archive changed: not the one the log recorded.
	data, err := os.ReadFile(a1)
	must(t, err)
	a1x := filepath.Join(dir, "a1x.log")
	must(t, os.WriteFile(a1x, bytes.Replace(data, []byte(`"alice"`), []byte(`"eve"`), 1), 0o640))
	bad, err = l.Verify(ctx, a1x)
	must(t, err)
	if bad.Status() != 1 || !strings.Contains(bad.Problems[0].String(), "no archived entry of the log names this file") {
		t.Fatalf("changed archive: %+v", bad.Problems)
	}
	// Stopped before the drop: the next run finishes it, then archives
	// what is old now.
	for i := range 1100 {
		filler[i] = map[string]any{"m": i}
	}
	must(t, l.AppendAll(ctx, KindPrunePool, filler[:1100]))
	a2 := filepath.Join(dir, "a2.log")
	rep2, err := l.Archive(ctx, time.Now().Add(time.Hour), a2)
	must(t, err)
	if rep2.From != rep.Through+1 || rep2.Archived == 0 {
		t.Fatalf("second archive: %+v", rep2)
	}
	all, err := l.Verify(ctx, a2, a1)
	must(t, err)
	if all.Status() != 0 || all.Archived != 0 || len(all.Archives) != 2 {
		t.Fatalf("both archives: %+v", all)
	}
	only2, err := l.Verify(ctx, a2)
	must(t, err)
	if only2.Status() != 0 || only2.Archived != rep.Through {
		t.Fatalf("the newer archive alone: %+v", only2)
	}
	// Entries dropped without an archived entry: named.
	must(t, l.b.dropLog(ctx, rep2.Through+1, rep2.Through+1))
	if start, _ := l.b.logStart(ctx); start == rep2.Through+2 {
		bad, err = l.Verify(ctx)
		must(t, err)
		if bad.Status() != 1 || !strings.Contains(bad.Problems[0].What, "no archived entry names entries") {
			t.Fatalf("cut by hand: %+v", bad.Problems)
		}
	}
}

func TestArchiveFiles(t *testing.T) {
	l, vkey := signedLedger(t, filepath.Join(t.TempDir(), "state"))
	f := l.b.(*files)
	archiveLifecycle(t, l, vkey, func(c *Ceremony) {
		// What a hand with write access to state_dir can do: the history
		// rewritten, its checksum made anew.
		var history []*Ceremony
		must(t, load(f.d, historyFile, historyFormat, &history))
		for i := range history {
			if history[i].ID == c.ID {
				history[i] = c
			}
		}
		must(t, store(f.d, historyFile, historyFormat, history))
	})
}

func TestArchiveMySQL(t *testing.T) {
	db, srv := ledgerDB(t)
	skey, vkey, err := note.GenerateKey(nil, "test-host")
	must(t, err)
	signer, err := note.NewSigner(skey)
	must(t, err)
	l := mysqlLedgerFor(t, srv, Options{Keys: []string{vkey}, Signer: func(context.Context) (note.Signer, error) { return signer, nil }})
	archiveLifecycle(t, l, vkey, func(c *Ceremony) {
		doc, sum, err := seal(c)
		must(t, err)
		_, err = db.Query(fmt.Sprintf("UPDATE keyguard_history SET doc = CONVERT(0x%x USING utf8mb4), sha256 = '%s' WHERE id = '%s'", doc, sum, c.ID))
		must(t, err)
	})
}
