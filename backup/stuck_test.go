package backup

import (
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
)

// What the ceremonies leave stuck, and what is in progress instead.
func TestFindStuck(t *testing.T) {
	now := time.Now().UTC()
	tests := []struct {
		name   string
		open   *ledger.Ceremony // nil: none open
		keys   []enforcer.BackupState
		writer string
		want   string // the Stuck's text, "" for none
	}{
		{"nothing", nil, []enforcer.BackupState{enforcer.BackupDone}, "", ""},
		{"Prepared with no ceremony", nil, []enforcer.BackupState{enforcer.BackupPrepared, enforcer.BackupPrepared}, "",
			"2 keys of repository R are Prepared in the enforcer with no ceremony open (a backup prepare interrupted, or run by hand): the enforcer will not make them omnipresent; take them into a ceremony with ods-keyguard backup prepare -r R, or unflag them with ods-keyguard backup rollback -r R"},
		{"Prepared under a live writer: a prepare in progress", nil, []enforcer.BackupState{enforcer.BackupPrepared}, "pid 42", ""},
		{"interrupted preparing", &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Preparing, Prepared: now}, nil, "",
			"backup ceremony c1 of R was interrupted while preparing: run ods-keyguard backup prepare -r R again (it takes it up), or backup rollback -r R"},
		{"preparing under a live writer", &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Preparing, Prepared: now}, nil, "pid 42", ""},
		{"interrupted rolling back", &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.RollingBack, Prepared: now}, nil, "",
			"backup ceremony c1 of R was interrupted while rolling back: run ods-keyguard backup rollback -r R again to finish it"},
		{"open within grace", &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Open, Prepared: now.Add(-time.Hour)}, nil, "", ""},
		{"open past grace", &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Open, Prepared: now.Add(-50 * time.Hour)}, nil, "",
			"backup ceremony c1 of R open for 2d2h: finish it with backup done, or backup rollback; until then its keys stay Prepared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := ledgertest.New(t).Ceremonies(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tt.open != nil {
				if err := store.SaveOpen(t.Context(), tt.open); err != nil {
					t.Fatal(err)
				}
			}
			st := &enforcer.State{}
			for i, b := range tt.keys {
				st.Keys = append(st.Keys, key(int64(i+1), string(rune('a'+i)), enforcer.ZSK, b))
			}
			var got []string
			for _, s := range FindStuck(st, store, tt.writer, now, 24*time.Hour) {
				got = append(got, s.String())
			}
			if strings.Join(got, "\n") != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
