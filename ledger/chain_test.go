package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// signedLedger is a files ledger whose checkpoints are signed with a new key.
func signedLedger(t *testing.T, dir string) (*Ledger, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, "test-host")
	must(t, err)
	signer, err := note.NewSigner(skey)
	must(t, err)
	l, err := New(context.Background(), Options{Dir: dir, Group: -1, LockWait: time.Second, Keys: []string{vkey},
		Signer: func(context.Context) (note.Signer, error) { return signer, nil }})
	must(t, err)
	t.Cleanup(func() { l.Close() })
	return l, vkey
}

// writeSome records a ceremony's steps and DS events, as the commands do.
func writeSome(t *testing.T, l *Ledger) *Ceremony {
	t.Helper()
	ctx := context.Background()
	s, err := l.Ceremonies(ctx)
	must(t, err)
	c := &Ceremony{ID: NewID("SoftHSM", time.Now()), Repository: "SoftHSM", Status: Preparing, Operator: "alice", Witnesses: []string{"bob"}}
	must(t, s.SaveOpen(ctx, c))
	c.Status, c.Keys = Open, []KeyRecord{{Locator: "aa", Role: "KSK"}}
	must(t, s.SaveOpen(ctx, c))
	must(t, l.AddDS(ctx, DSEvent{Kind: Submit, Action: Withheld, Zone: "example.com", Fingerprint: strings.Repeat("a", 64)}))
	c.Status, c.Ended, c.EndOperator = Confirmed, time.Now().UTC(), "carol"
	must(t, s.End(ctx, c))
	must(t, l.AddDS(ctx, DSEvent{Kind: Submit, Action: Forwarded, Zone: "example.com", Fingerprint: strings.Repeat("a", 64)}))
	_, err = l.Append(ctx, KindPrunePool, map[string]any{"removed": 0})
	must(t, err)
	must(t, l.CompactDS(ctx))
	return c
}

func TestChainVerifies(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	l, vkey := signedLedger(t, dir)
	c := writeSome(t, l)
	rep, err := l.Verify(ctx)
	must(t, err)
	if rep.Status() != 0 || rep.Signed != rep.Entries || rep.Entries < 7 {
		t.Fatalf("verify: %+v", rep)
	}
	// The export verifies with the public key alone.
	x, err := l.Export(ctx, c.ID)
	must(t, err)
	b, err := json.Marshal(x)
	must(t, err)
	xr, err := VerifyExport(bytes.NewReader(b), []string{vkey})
	must(t, err)
	if len(xr.Steps) != 3 || xr.Final == nil || xr.Final.Status != Confirmed || xr.Final.Witnesses[0] != "bob" {
		t.Fatalf("export: %+v", xr)
	}
	// Changed in the export: refused.
	bad := bytes.Replace(b, []byte(`carol`), []byte(`mallory`), 1)
	if _, err := VerifyExport(bytes.NewReader(bad), []string{vkey}); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("a changed export: %v", err)
	}
	_, other, _ := note.GenerateKey(nil, "other")
	if _, err := VerifyExport(bytes.NewReader(b), []string{other}); err == nil || !strings.Contains(err.Error(), "not by the key given") {
		t.Errorf("another key: %v", err)
	}
	// A log line changed by hand: named.
	seg := filepath.Join(dir, logDir, segmentName(1))
	data, err := os.ReadFile(seg)
	must(t, err)
	must(t, os.WriteFile(seg, bytes.Replace(data, []byte(`"alice"`), []byte(`"eve"`), 1), 0o640))
	rep, err = l.Verify(ctx)
	must(t, err)
	if rep.Status() != 1 || rep.Problems[0].Entry == nil || *rep.Problems[0].Entry != 2 || !strings.Contains(rep.Problems[0].What, "does not match its hash") {
		t.Fatalf("a changed entry: %+v", rep.Problems)
	}
}

func TestChainMySQL(t *testing.T) {
	ctx := context.Background()
	_, srv := ledgerDB(t)
	skey, vkey, err := note.GenerateKey(nil, "test-host")
	must(t, err)
	signer, err := note.NewSigner(skey)
	must(t, err)
	l := mysqlLedgerFor(t, srv, Options{Keys: []string{vkey}, Signer: func(context.Context) (note.Signer, error) { return signer, nil }})
	writeSome(t, l)
	rep, err := l.Verify(ctx)
	must(t, err)
	if rep.Status() != 0 || rep.Signed != rep.Entries {
		t.Fatalf("verify: %+v", rep)
	}
}
