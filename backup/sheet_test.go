package backup

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// The run sheet names what the witnesses check, and groff makes a PDF of
// it where groff is installed ($ODS_KEYGUARD_SHEET: write it there too).
func TestRunSheet(t *testing.T) {
	c := &ledger.Ceremony{ID: "20261207T120000Z-SoftHSM-abcdef", Repository: "SoftHSM", Status: ledger.Confirmed, Operator: "alice",
		Witnesses: []string{"Bob | Ross"}, Prepared: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), Ended: time.Date(2026, 12, 7, 12, 30, 0, 0, time.UTC),
		EndOperator: "carol", Tokens: []ledger.TokenRecord{{Name: "SoftHSM", Kind: "repository", Label: "ods-a", Serial: "b10af8d90670219c"}},
		Keys:   []ledger.KeyRecord{{Locator: "96f131b48f33fce4b8ed5a4e2d39bb59", Role: "KSK", Zones: []string{"example.com"}, KeyTag: 12345, Type: "EC P-256"}},
		Checks: []string{`a check with \ and .dot`}}
	md, err := RunSheet(context.Background(), c, "ods-a", Seal{}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 96f131b48f33fce4b8ed5a4e2d39bb59 | KSK | example.com | 12345 | EC P-256 |", "Bob \\| Ross", "| 7 | Instruct OpenDNSSEC"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	sandbox.NeedTools(t, "groff", "gropdf")
	pdf, err := RunSheet(context.Background(), c, "ods-a", Seal{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("not a PDF: %.40q", pdf)
	}
	if f := os.Getenv("ODS_KEYGUARD_SHEET"); f != "" {
		os.WriteFile(f, pdf, 0o644)
	}
}
