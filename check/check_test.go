package check

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/publish"
)

// check's verdicts, through Run, on a fake enforcer and fake tokens with a
// real ledger: each case a few lines. The same verdicts against a real
// ods-enforcerd and SoftHSMv2 are the check_*.txtar scripts.

// checkLab is zone example.com signed by a KSK and a ZSK in use, both
// backed up in a ceremony an hour ago, on repository R's token and mirror
// b, with a backed-up spare of each in the pool.
type checkLab struct {
	w        *inventorytest.World
	f        *inventorytest.Fake
	src      Sources
	opt      CheckOptions
	dir      string
	ksk, zsk *enforcer.Key
	spare    *enforcer.Key // the spare ZSK
}

func newCheckLab(t *testing.T) *checkLab {
	t.Helper()
	w := inventorytest.NewWorld(t)
	ksk := w.Key("R", "a1", enforcer.KSK, enforcer.BackupDone)
	zsk := w.Key("R", "b2", enforcer.ZSK, enforcer.BackupDone)
	spare := w.Key("R", "c3", enforcer.ZSK, enforcer.BackupDone)
	spareKSK := w.Key("R", "f6", enforcer.KSK, enforcer.BackupDone)
	w.Assign("example.com", ksk, enforcer.DSSeen, true)
	w.Assign("example.com", zsk, enforcer.DSUnsubmitted, true)
	f := inventorytest.New(w.St)
	f.Put([]hsmcheck.Key{w.Pair(ksk), w.Pair(zsk), w.Pair(spare), w.Pair(spareKSK)}, "R", "b")
	warn, _ := ParseRange("1:")
	crit, _ := ParseRange("0:")
	l := &checkLab{w: w, f: f, dir: t.TempDir() + "/state", ksk: ksk, zsk: zsk, spare: spare,
		opt: CheckOptions{At: time.Now().UTC(), Warn: warn, Crit: crit, Interval: 7 * 24 * time.Hour, Grace: 24 * time.Hour}}
	l.src = Sources{Source: f, Tokens: inventorytest.Tokens("R", "b"), RequireBackup: map[string]bool{"R": true}, Ledger: "state_dir " + l.dir,
		OpenLedger: func(ctx context.Context) (*ledger.Ledger, error) {
			return ledger.New(ctx, ledger.Options{Dir: l.dir, Group: -1})
		}}
	l.confirm(t, "c1", time.Hour, ksk, zsk, spare, spareKSK)
	return l
}

// confirm records a ceremony of R that ended ago, covering keys.
func (l *checkLab) confirm(t *testing.T, id string, ago time.Duration, keys ...*enforcer.Key) {
	t.Helper()
	c := &ledger.Ceremony{ID: id, Repository: "R", Status: ledger.Confirmed, RequireBackup: true,
		Prepared: l.opt.At.Add(-ago - time.Minute), Ended: l.opt.At.Add(-ago), BackupToken: &ledger.TokenRecord{Name: "vault"}}
	for _, k := range keys {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: k.Locator, Role: k.Role.String(), Fingerprint: l.w.Pair(k).Fingerprint})
	}
	l.store(t, func(s *ledger.Store) error { return s.End(t.Context(), c) })
}

func (l *checkLab) store(t *testing.T, do func(*ledger.Store) error) {
	t.Helper()
	led, err := l.src.OpenLedger(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	s, err := led.Ceremonies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := do(s); err != nil {
		t.Fatal(err)
	}
}

func TestCheckVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*testing.T, *checkLab)
		state   State
		summary string // the first line, or a part of it
		finding string // a finding's text, or a part of it
	}{
		{"all well", func(*testing.T, *checkLab) {}, StateOK,
			"4 keys, 2 pools: every key in use backed up, enough until the next backup, last backup 1h ago", ""},
		{"rule 1: a KSK in use made after the ceremony", func(t *testing.T, l *checkLab) {
			k := l.w.Key("R", "d4", enforcer.KSK, enforcer.BackupRequired)
			l.w.Assign("example.com", k, enforcer.DSSubmit, true)
			l.f.Put([]hsmcheck.Key{l.w.Pair(k)}, "R", "b")
		}, StateCritical, "1 key in use without a confirmed backup (example.com KSK ", "is in use without a confirmed backup"},
		{"a key missing from the mirror", func(t *testing.T, l *checkLab) { l.f.Remove(l.zsk.Locator, "b") },
			StateCritical, "1 problem on the tokens (key b2 ", "b2"},
		{"a mirror that cannot be read", func(t *testing.T, l *checkLab) {
			l.f.TokenErr["b"] = errors.New(`mirror "b": login: CKR_PIN_INCORRECT`)
		}, StateUnknown, "cannot read mirror", "CKR_PIN_INCORRECT"},
		{"the database cannot be read", func(t *testing.T, l *checkLab) {
			l.f.StateErr = errors.New("enforcer database kasp.db: unable to open database file")
		}, StateUnknown, "enforcer database kasp.db: unable to open database file", ""},
		{"no spare left", func(t *testing.T, l *checkLab) {
			l.spare.State = enforcer.Delete
		}, StateWarning, "1 pool short of backed-up keys (", "spare 0"},
		{"the last backup past interval and grace", func(t *testing.T, l *checkLab) {
			l.store(t, func(s *ledger.Store) error { return nil })
			l.opt.At = l.opt.At.Add(9 * 24 * time.Hour)
		}, StateCritical, "", "past interval 7d + grace 1d"},
		{"keys Prepared with no ceremony open", func(t *testing.T, l *checkLab) {
			k := l.w.Key("R", "e5", enforcer.ZSK, enforcer.BackupPrepared)
			l.f.Put([]hsmcheck.Key{l.w.Pair(k)}, "R", "b")
		}, StateWarning, "", "Prepared in the enforcer with no ceremony open"},
		{"a ceremony open past grace", func(t *testing.T, l *checkLab) {
			l.store(t, func(s *ledger.Store) error {
				return s.SaveOpen(t.Context(), &ledger.Ceremony{ID: "c2", Repository: "R", Status: ledger.Open, RequireBackup: true,
					Prepared: l.opt.At.Add(-3 * 24 * time.Hour)})
			})
		}, StateWarning, "", "backup ceremony c2 of R open for 3d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newCheckLab(t)
			tt.change(t, l)
			rep := Run(t.Context(), 10*time.Second, l.src, l.opt)
			var texts []string
			for _, f := range rep.Findings {
				texts = append(texts, f.State.String()+" "+f.Category+": "+f.Text)
			}
			all := strings.Join(texts, "\n")
			if rep.State != tt.state || !strings.Contains(rep.Summary, tt.summary) || !strings.Contains(all, tt.finding) {
				t.Errorf("%s: %s\nfindings:\n%s\nwant %s, summary with %q, a finding with %q", rep.State, rep.Summary, all, tt.state, tt.summary, tt.finding)
			}
		})
	}
}

// A source that does not answer in time gives UNKNOWN naming it, within
// the plugin's time, never a hang.
func TestCheckOutOfTime(t *testing.T) {
	l := newCheckLab(t)
	slow := &slowSource{Fake: l.f}
	l.src.Source = slow
	start := time.Now()
	rep := Run(t.Context(), time.Second, l.src, l.opt)
	if rep.State != StateUnknown || !strings.Contains(rep.Summary, "no answer within 0.9s (-t 1) from the enforcer database the fake enforcer database or the tokens") {
		t.Errorf("%s: %s", rep.State, rep.Summary)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %s", d)
	}
}

// slowSource is a database that answers only when the deadline has come.
type slowSource struct{ *inventorytest.Fake }

func (s *slowSource) State(ctx context.Context) (*enforcer.State, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// The first line is made from the findings' fields, not from their text:
// a text worded otherwise summarizes the same.
func TestSummaryFromFields(t *testing.T) {
	zero, minus := 0, -1
	keys := 9
	rep := &Report{Keys: &keys, Findings: []Finding{
		{State: StateCritical, Category: "rule 2", Subject: "p/KSK", Spare: &minus, Text: "worded otherwise"},
		{State: StateWarning, Category: "rule 2", Subject: "p/ZSK", Spare: &zero, Text: "worded otherwise"},
	}}
	if got := summarize(rep); got != "2 pools short of backed-up keys (p/KSK spare -1, p/ZSK spare 0)" {
		t.Errorf("rule 2: %s", got)
	}
	rep.Findings = []Finding{{State: StateWarning, Category: "zone", Zone: "b.example", Text: "no zone name here"},
		{State: StateWarning, Category: "zone", Zone: "b.example", Text: "nor here"}}
	if got := summarize(rep); got != "2 problems with the zones as served (b.example)" {
		t.Errorf("zone: %s", got)
	}
	rep.Findings = []Finding{{State: StateCritical, Category: "parent", Zone: "a.example", Text: "x"}, {State: StateWarning, Category: "parent", Zone: "c.example", Text: "y"}}
	if got := summarize(rep); got != "chain of trust broken at the parent: no DS matches a backed-up KSK (a.example)" {
		t.Errorf("parent: %s", got)
	}
}

// The publish gate's alerts are findings with the zone, the serial and the
// first key without a backup, CRITICAL or WARNING as the alert says; one
// clause sums them up; a state that cannot be read is UNKNOWN.
func TestPublishFindings(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	dl := at.Add(6 * time.Hour)
	f := Facts{PublishRead: true, Publish: []publish.Alert{
		{Zone: "a.example", Kind: publish.AlertHeld, Critical: true, Serial: 7, Since: at.Add(-time.Hour), Deadline: &dl,
			Keys:   []ledger.PublishKey{{KeyTag: 1, Locator: "aa", BackedUp: true}, {KeyTag: 2, Locator: "bb", Reason: "in no confirmed backup ceremony"}},
			Reason: "signed by keys without a verified backup (rule 1): key tag 2: in no confirmed backup ceremony", OnDeadline: publish.DeadlinePublish},
		{Zone: "b.example", Kind: publish.AlertReported, Serial: 3, Since: at, Reason: "held it: x"},
	}}
	rep := &Report{Findings: []Finding{}}
	publishFindings(rep, f, CheckOptions{At: at}, func(fd Finding) { rep.Findings = append(rep.Findings, fd) })
	if len(rep.Findings) != 2 || len(rep.Publish) != 2 {
		t.Fatalf("%+v", rep.Findings)
	}
	h := rep.Findings[0]
	if h.State != StateCritical || h.Category != "publish" || h.Zone != "a.example" || h.Key != "bb" || h.Subject != "serial 7" ||
		h.Text != "zone a.example serial 7 held since 2026-06-01T11:00Z: signed by keys without a verified backup (rule 1): key tag 2: in no confirmed backup ceremony; published anyway at 2026-06-01T18:00Z unless a ceremony covers its keys first" {
		t.Errorf("held: %+v", h)
	}
	if rep.Findings[1].State != StateWarning {
		t.Errorf("reported: %+v", rep.Findings[1])
	}
	keys := 0
	rep.Keys = &keys
	if got := summarize(rep); got != "publish gate: a.example held, b.example reported" {
		t.Errorf("summary: %s", got)
	}
	rep = &Report{Findings: []Finding{}}
	publishFindings(rep, Facts{PublishRead: true, PublishErr: errors.New("state file x: checksum mismatch")}, CheckOptions{At: at}, func(fd Finding) { rep.Findings = append(rep.Findings, fd) })
	if len(rep.Findings) != 1 || rep.Findings[0].State != StateUnknown || rep.Publish != nil {
		t.Errorf("unreadable: %+v", rep.Findings)
	}
}
