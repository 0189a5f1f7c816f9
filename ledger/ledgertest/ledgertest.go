// Package ledgertest gives tests of other packages a real ledger: state_dir
// files under the test's temporary folder, compaction and all.
package ledgertest

import (
	"context"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// New is an empty ledger in state_dir files under t's temporary folder,
// closed when t ends.
func New(t testing.TB) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(context.Background(), ledger.Options{Dir: t.TempDir() + "/state", Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
