package hooks

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// keys is a token in a test: locator -> fingerprint.
type keys map[string]string

func (k keys) Find(id string) (hsmcheck.Key, int) {
	fp, ok := k[strings.ToLower(id)]
	if !ok {
		return hsmcheck.Key{}, 0
	}
	return hsmcheck.Key{ID: id, Fingerprint: fp}, 1
}

// world builds a zone with one KSK whose DNSKEY is notesLine.
func world(t *testing.T) (Submission, facts, *enforcer.Key) {
	t.Helper()
	s := ParseLine(notesLine)
	z := &enforcer.Zone{Name: "example.com"}
	k := &enforcer.Key{Locator: "aa01", Repository: "R", Role: enforcer.KSK, Backup: enforcer.BackupDone}
	u := &enforcer.Use{Key: k, Zone: z, Role: enforcer.KSK, KeyTag: s.KeyTag}
	k.Uses, z.Keys = []*enforcer.Use{u}, []*enforcer.Use{u}
	c := &ledger.Ceremony{ID: "c1", Repository: "R", Status: ledger.Confirmed,
		Keys: []ledger.KeyRecord{{Locator: "aa01", Fingerprint: s.Fingerprint}}}
	cov := ledger.Coverage{"R/aa01": c}
	has := keys{"aa01": s.Fingerprint}
	f := facts{
		State:         &enforcer.State{Zones: []*enforcer.Zone{z}, Keys: []*enforcer.Key{k}},
		Coverage:      cov,
		RequireBackup: map[string]bool{"R": true},
		Tokens:        map[string][]tokenView{"R": {{Name: `repository "R"`, Keys: has}, {Name: `mirror "b"`, Keys: has}}},
	}
	return s, f, k
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Submission, *facts, *enforcer.Key)
		want   string // "" forwards
	}{
		{"covered", func(*Submission, *facts, *enforcer.Key) {}, ""},
		{"no ceremony", func(_ *Submission, f *facts, _ *enforcer.Key) { f.Coverage = ledger.Coverage{} }, "in no confirmed backup ceremony"},
		{"not done", func(_ *Submission, _ *facts, k *enforcer.Key) { k.Backup = enforcer.BackupPrepared }, "key aa01: the enforcer has it Prepared, not Done"},
		{"not done, no RequireBackup", func(_ *Submission, f *facts, k *enforcer.Key) {
			k.Backup = enforcer.BackupNotRequired
			f.RequireBackup["R"] = false
		}, ""},
		// An imported key, or one made before RequireBackup: the enforcer
		// never moves it, the ceremony is its record.
		{"not required, with RequireBackup", func(_ *Submission, _ *facts, k *enforcer.Key) { k.Backup = enforcer.BackupNotRequired }, ""},
		{"mirror lost it", func(_ *Submission, f *facts, _ *enforcer.Key) {
			f.Tokens["R"][1].Keys = keys{}
		}, `missing from mirror "b"`},
		{"mirror unreadable", func(_ *Submission, f *facts, _ *enforcer.Key) {
			f.Tokens["R"][1] = tokenView{Name: `mirror "b"`, Err: errors.New("login: CKR_PIN_INCORRECT")}
		}, "CKR_PIN_INCORRECT"},
		{"another key on the token", func(_ *Submission, f *facts, _ *enforcer.Key) {
			f.Tokens["R"][0].Keys = keys{"aa01": "ffff"}
		}, `the DNSKEY is not key aa01 on repository "R"`},
		{"cka_id disagrees", func(s *Submission, _ *facts, _ *enforcer.Key) { s.CKAID = "bb02" }, "and cka_id bb02"},
		{"cka_id agrees", func(s *Submission, _ *facts, _ *enforcer.Key) { s.CKAID = "AA01" }, ""},
		{"other zone", func(s *Submission, _ *facts, _ *enforcer.Key) { s.Zone = "example.net" }, "no KSK with key tag"},
		{"database unreadable", func(_ *Submission, f *facts, _ *enforcer.Key) {
			f.State, f.StateErr = nil, errors.New("enforcer database x: locked")
		}, "enforcer database x: locked"},
		{"garbage", func(s *Submission, _ *facts, _ *enforcer.Key) { *s = ParseLine("nonsense\n") }, "not a DNSKEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f, k := world(t)
			tt.change(&s, &f, k)
			d := decide(s, f)
			if tt.want == "" {
				if !d.Forward || d.Ceremony != "c1" {
					t.Fatalf("withheld: %s", d.Reason)
				}
				return
			}
			if d.Forward || !strings.Contains(d.Reason, tt.want) {
				t.Fatalf("got forward=%v reason %q, want withheld for %q", d.Forward, d.Reason, tt.want)
			}
		})
	}
}

func TestDecideKeyTagCollision(t *testing.T) {
	s, f, _ := world(t)
	z := f.State.Zones[0]
	other := &enforcer.Key{Locator: "cc03", Repository: "R", Role: enforcer.KSK, Backup: enforcer.BackupDone}
	u := &enforcer.Use{Key: other, Zone: z, Role: enforcer.KSK, KeyTag: s.KeyTag}
	other.Uses = []*enforcer.Use{u}
	z.Keys = append([]*enforcer.Use{u}, z.Keys...)
	// cc03 is on the tokens with another public key: the fingerprint picks aa01.
	for i := range f.Tokens["R"] {
		f.Tokens["R"][i].Keys = keys{"cc03": "other", "aa01": s.Fingerprint}
	}
	if d := decide(s, f); !d.Forward || d.Locator != "aa01" {
		t.Fatalf("got %+v", d)
	}
}

func TestOutcomeExitStatus(t *testing.T) {
	exit7 := exec.Command("sh", "-c", "exit 7").Run()
	for _, c := range []struct {
		name string
		o    Outcome
		want int
	}{
		{"forwarded", Outcome{Forwarded: 1}, 0},
		{"approved, no forward command: kept back", Outcome{Approved: 1}, 1},
		{"retraction never at the parent", Outcome{Skipped: 1}, 0},
		{"no DNSKEY", Outcome{Nothing: true}, 1},
		{"withheld", Outcome{Forwarded: 1, Withheld: 1}, 1},
		{"held", Outcome{Held: 1}, 1},
		{"rejected", Outcome{Forwarded: 1, Rejected: 1}, 1},
		{"not recorded", Outcome{Forwarded: 1, RecordErr: errors.New("disk full")}, 1},
		{"forward did not start", Outcome{ForwardErr: errors.New("no such file")}, 1},
		{"forward failed with 7", Outcome{ForwardErr: exit7}, 7},
	} {
		if got := c.o.ExitStatus(); got != c.want {
			t.Errorf("%s: exit status %d, want %d", c.name, got, c.want)
		}
	}
}

// A zone the enforcer deleted leaves its forwarded DS at the parent: a
// warning by the records, none once the parent is read and has no DS of
// it, none once the operator settled it.
func TestStatusGoneZone(t *testing.T) {
	fwd := ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Forwarded, Zone: "gone.example", KeyTag: 7, Algorithm: 13, Locator: "aa", Fingerprint: "ff",
		Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	st := &enforcer.State{}
	book := ledger.Book([]ledger.DSEvent{fwd})
	if got := GoneZones(st, book); len(got) != 1 || got[0] != "gone.example" {
		t.Fatalf("GoneZones = %v", got)
	}
	findings := func(in StatusInput) []Finding { return Findings(Status(in)) }
	f := findings(StatusInput{State: st, Book: book})
	if len(f) != 1 || f[0].Severity != Warning || !strings.Contains(f[0].Text, "zone gone.example is no longer in the enforcer, but the DS of key tag 7 (key aa)") ||
		!strings.Contains(f[0].Text, "by the records") {
		t.Fatalf("by the records: %+v", f)
	}
	still := map[string]parent.Answer{"gone.example": {Zone: "gone.example", DS: []parent.DS{{KeyTag: 7, Algorithm: 13, DigestType: 2, Digest: "00"}}}}
	if f := findings(StatusInput{State: st, Book: book, Parent: still}); len(f) != 1 || !strings.Contains(f[0].Text, "the parent still publishes it") {
		t.Fatalf("parent has it: %+v", f)
	}
	none := map[string]parent.Answer{"gone.example": {Zone: "gone.example"}}
	if f := findings(StatusInput{State: st, Book: book, Parent: none}); len(f) != 0 {
		t.Fatalf("parent has none: %+v", f)
	}
	settled := fwd
	settled.Kind, settled.Action, settled.Time = ledger.Retract, ledger.Settled, fwd.Time.Add(time.Hour)
	book = ledger.Book([]ledger.DSEvent{fwd, settled})
	if f := findings(StatusInput{State: st, Book: book}); len(f) != 0 || len(GoneZones(st, book)) != 0 {
		t.Fatalf("settled: %+v", f)
	}
}

func TestEventText(t *testing.T) {
	for _, c := range []struct {
		e    ledger.DSEvent
		want string
	}{
		{ledger.DSEvent{Action: ledger.Created, By: "ds-submit", Reason: "0 DS records adopted"},
			"ods-keyguard's DS records begin here (the first run of ds-submit); no KSK or CSK had its DS at the parent before: nothing adopted"},
		{ledger.DSEvent{Action: ledger.Created, By: "ds-retract", Reason: "2 DS records adopted"},
			"ods-keyguard's DS records begin here (the first run of ds-retract); 2 DS the enforcer had at the parent before are adopted (the adopted rows)"},
		{ledger.DSEvent{Action: ledger.Created, By: "ds-submit", Reason: createdReason(1)},
			"ods-keyguard's DS records begin here (the first run of ds-submit); 1 DS the enforcer had at the parent before is adopted (the adopted row)"},
		{ledger.DSEvent{Kind: ledger.Retract, Action: ledger.Forwarded}, "the forward command took the retraction to the registrar"},
		{ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Withheld, Reason: "why"}, "why"},
	} {
		if got := eventText(c.e); got != c.want {
			t.Errorf("EventText(%+v) = %q, want %q", c.e, got, c.want)
		}
	}
}
