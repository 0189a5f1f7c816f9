package rules

import (
	"context"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// testLedger is an empty ledger in state_dir files under t's temporary
// folder: the real backend, compaction and all, closed when t ends.
func testLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(context.Background(), ledger.Options{Dir: t.TempDir() + "/state", Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
