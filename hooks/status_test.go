package hooks

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/parent/parenttest"
)

// hook status on the fake: the enforcer and the tokens in memory, the
// records in a ledger of files, the parent a DNS server in this process.
// Against ods-enforcerd and BIND it is check_parent_digest and
// hook_rollover.

// statusOf reads hook status of example.com, the parent at p (nil: none).
func (l *guardLab) statusOf(t *testing.T, p *parent.Config) []ZoneDS {
	t.Helper()
	src := StatusSources{Source: l.f, Ledger: l.g.Ledger, RequireBackup: l.g.RequireBackup, Tokens: l.g.Tokens}
	if p != nil {
		src.Parent = *p
	}
	zones, err := ReadStatus(t.Context(), src, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(zones) != 1 || zones[0].Zone != "example.com" {
		t.Fatalf("zones: %+v", zones)
	}
	return zones
}

// findings is the zone's findings, one "STATE category: text" a line.
func findings(zones []ZoneDS) string {
	var b strings.Builder
	for _, f := range Findings(zones) {
		b.WriteString(f.Severity.String() + " " + f.Category + ": " + f.Text + "\n")
	}
	return b.String()
}

func TestStatusWithoutParent(t *testing.T) {
	l := newGuardLab(t)
	// Nothing wrong: the old KSK's DS adopted, seen, backed up.
	zones := l.statusOf(t, nil)
	if Worst(zones) != 0 || findings(zones) != "" {
		t.Fatalf("nothing wrong: %s", findings(zones))
	}
	// A rollover onto a key with no ceremony: the submission is withheld,
	// and says so.
	l.rollover()
	l.g.Submit(t.Context(), strings.NewReader(l.w.Line("example.com", l.new)))
	zones = l.statusOf(t, nil)
	if Worst(zones) != Warning || !strings.Contains(findings(zones), "WARNING hook: ") || !strings.Contains(findings(zones), "withheld since") {
		t.Errorf("withheld: %s", findings(zones))
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, zones); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"zone example.com\n", "the enforcer has its DS seen at the parent (dsAtParent seen, DS record omnipresent)",
		"the enforcer has its DS to be submitted (dsAtParent submit", "parent should hold it: yes", "WARNING: hook: "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	doc, err := json.Marshal(StatusDoc(zones))
	if err != nil || !strings.HasPrefix(string(doc), `{"schema":"ods-keyguard/hook-status/1","zones":[`) || !strings.Contains(string(doc), `"state":"WARNING"`) {
		t.Errorf("document: %v %s", err, doc)
	}
	// The other renderings of the records.
	book, err := l.g.Ledger.DS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := WritePending(&b, book); err != nil || !strings.Contains(b.String(), "ds-submit") {
		t.Errorf("pending: %v\n%s", err, b.String())
	}
	b.Reset()
	evs := History(book, "example.com")
	if err := WriteHistory(&b, evs); err != nil || len(evs) == 0 || !strings.Contains(b.String(), "withheld") {
		t.Errorf("history: %v\n%s", err, b.String())
	}
	for name, d := range map[string]any{"hook-pending": PendingDoc(book), "hook-history": HistoryDoc(evs), "hook-release": ReleaseDoc(&ReleaseReport{})} {
		if j, err := json.Marshal(d); err != nil || !strings.HasPrefix(string(j), `{"schema":"ods-keyguard/`+name+`/1"`) {
			t.Errorf("%s: %v %s", name, err, j)
		}
	}
	if _, err := ReadStatus(t.Context(), StatusSources{Source: l.f, Ledger: l.g.Ledger}, "nowhere.example"); err == nil {
		t.Error("a zone nobody knows was reported")
	}
}

// What the parent serves, matched by digest: the old KSK's DS is the
// chain; a DS with the new key's tag and another digest is forged; no DS
// at all after a forward is a WARNING; a parent that cannot be read is
// UNKNOWN, and hook status exits on it only when nothing worse is found.
func TestStatusWithParent(t *testing.T) {
	tests := []struct {
		name   string
		serve  func(*parenttest.Server, *guardLab)
		worst  Severity
		want   string
		noNeed string
	}{
		{"the chain at the parent", func(p *parenttest.Server, l *guardLab) {
			p.Serve(t, "example.com", l.w.Line("example.com", l.old))
		}, 0, "", ""},
		{"a forged DS with the KSK's key tag", func(p *parenttest.Server, l *guardLab) {
			rr, _ := dns.NewRR(l.w.Line("example.com", l.old))
			ds := rr.(*dns.DNSKEY).ToDS(dns.SHA256)
			ds.Digest = strings.Repeat("0", 64)
			p.ServeRR("example.com", ds)
		}, Critical, "whose digest matches no DNSKEY of the zone's keys with that key tag: a wrong or forged DS", ""},
		{"no DS though one was forwarded", func(p *parenttest.Server, l *guardLab) {
			p.Serve(t, "example.com")
		}, Warning, "the parent has no DS, though the DS of KSK", ""},
		{"the DS of a key the enforcer does not have", func(p *parenttest.Server, l *guardLab) {
			p.Serve(t, "example.com", l.w.Line("example.com", l.old), inventorytest.Line("example.com", inventorytest.NewKey(t, "cc")))
		}, Warning, "of no key the enforcer has for the zone", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newGuardLab(t)
			p := parenttest.Start(t)
			tt.serve(p, l)
			zones := l.statusOf(t, &parent.Config{Nameservers: []string{p.Addr}, Timeout: 2 * time.Second})
			if Worst(zones) != tt.worst || !strings.Contains(findings(zones), tt.want) {
				t.Errorf("worst %v, findings:\n%s\nwant %v with %q", Worst(zones), findings(zones), tt.worst, tt.want)
			}
			var b bytes.Buffer
			WriteStatus(&b, zones)
			if !strings.Contains(b.String(), "  parent: ") {
				t.Errorf("the parent's DS is not shown:\n%s", b.String())
			}
		})
	}
	t.Run("a parent that does not answer", func(t *testing.T) {
		l := newGuardLab(t)
		dead, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := dead.LocalAddr().String()
		dead.Close()
		zones := l.statusOf(t, &parent.Config{Nameservers: []string{addr}, Timeout: 300 * time.Millisecond})
		if Worst(zones) != Unknown || !strings.Contains(findings(zones), "UNKNOWN parent: cannot read the DS of zone example.com") {
			t.Errorf("unknown: %v\n%s", Worst(zones), findings(zones))
		}
		var b bytes.Buffer
		WriteStatus(&b, zones)
		if !strings.Contains(b.String(), "  parent: UNREADABLE: ") {
			t.Errorf("status:\n%s", b.String())
		}
	})
}

// A zone deleted from the enforcer leaves its DS at the parent: retract-gone
// sends its retraction through the forward command, or records that it
// was settled by hand; a zone the enforcer still has is refused.
func TestRetractGone(t *testing.T) {
	l := newGuardLab(t)
	if _, err := l.g.RetractGone(t.Context(), "example.com", "", "alice", false, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "is in the enforcer") {
		t.Fatalf("zone still there: %v", err)
	}
	l.w.St.Zones = nil
	l.old.Uses = nil
	book, err := l.g.Ledger.DS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := GoneZones(l.w.St, book); len(got) != 1 || got[0] != "example.com" {
		t.Fatalf("gone zones: %v", got)
	}
	keys, err := l.g.RetractGone(t.Context(), "example.com", "", "alice", false, &bytes.Buffer{})
	if err != nil || len(keys) != 1 || l.sent("retracted") != l.w.Line("example.com", l.old) {
		t.Fatalf("retract-gone: %v %v, sent %q", keys, err, l.sent("retracted"))
	}
	if _, err := l.g.RetractGone(t.Context(), "example.com", "", "alice", false, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "the records have no DS of it at the parent") {
		t.Errorf("again: %v", err)
	}

	l2 := newGuardLab(t)
	l2.w.St.Zones = nil
	l2.old.Uses = nil
	keys, err = l2.g.RetractGone(t.Context(), "example.com", "moved to another signer", "alice", true, &bytes.Buffer{})
	if err != nil || len(keys) != 1 || l2.sent("retracted") != "" || !strings.Contains(l2.log.String(), "settled by hand by alice: moved to another signer") {
		t.Errorf("by hand: %v %v\n%s", keys, err, l2.log)
	}
}
