package parentsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger/ledgertest"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/parent/parenttest"
)

// A whole run on the fake: the enforcer's state and tokens in memory
// (inventorytest), the records in a ledger of files, and the parent as a
// DNS server in this process (parenttest). The same against ods-enforcerd and BIND is parent_sync.txtar.

// scriptedEnforcer answers ods-enforcer key ds-seen|ds-gone, and keeps what it
// was told.
type scriptedEnforcer struct {
	told  []string
	fail  error
	first string // the first answer, then "1 KSKs changed."
}

func (e *scriptedEnforcer) Run(_ context.Context, args ...string) (string, error) {
	e.told = append(e.told, strings.Join(args, " "))
	if e.fail != nil {
		return "", e.fail
	}
	if e.first != "" {
		out := e.first
		e.first = ""
		return out, errors.New("exit status 11: " + out)
	}
	return "1 KSKs changed.", nil
}

type logLines struct{ lines []string }

func (l *logLines) Info(m string)    { l.lines = append(l.lines, "info: "+m) }
func (l *logLines) Warning(m string) { l.lines = append(l.lines, "warning: "+m) }
func (l *logLines) Err(m string)     { l.lines = append(l.lines, "err: "+m) }

// syncLab is one zone, a.example, with a KSK whose DS the enforcer has
// submitted, on token R.
type syncLab struct {
	w   *inventorytest.World
	u   *enforcer.Use
	p   *parenttest.Server
	e   *scriptedEnforcer
	log *logLines
	src Sources
	now time.Time
}

func newSyncLab(t *testing.T) *syncLab {
	t.Helper()
	w := inventorytest.NewWorld(t)
	k := w.Key("R", "a1", enforcer.KSK, enforcer.BackupDone)
	u := w.Assign("a.example", k, enforcer.DSSubmitted, true)
	f := inventorytest.New(w.St)
	f.Put(nil, "R")
	for _, pair := range w.Pairs {
		f.Holds["R"] = append(f.Holds["R"], pair)
	}
	l := &syncLab{w: w, u: u, p: parenttest.Start(t), e: &scriptedEnforcer{}, log: &logLines{}, now: time.Now().UTC()}
	l.src = Sources{Source: f, Ledger: ledgertest.New(t), Tokens: inventorytest.Tokens("R"), Enforcer: l.e, Log: l.log,
		Parent: parent.Config{Nameservers: []string{l.p.Addr}, Timeout: 2 * time.Second},
		Now:    func() time.Time { return l.now }}
	return l
}

func (l *syncLab) run(t *testing.T) *Report {
	t.Helper()
	rep, err := Run(t.Context(), l.src)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 1 {
		t.Fatalf("items: %+v", rep.Items)
	}
	return rep
}

func TestRunSeenThenGone(t *testing.T) {
	l := newSyncLab(t)
	line := l.w.Line("a.example", l.u.Key)
	// Not at the parent yet: wait, nothing told.
	if rep := l.run(t); rep.Items[0].Action != ActWait || len(l.e.told) != 0 {
		t.Fatalf("no DS yet: %+v, told %v", rep.Items[0], l.e.told)
	}
	// A dry run with the DS there says what it would do, tells and
	// records nothing.
	l.p.Serve(t, "a.example", line)
	l.src.DryRun = true
	rep := l.run(t)
	if it := rep.Items[0]; it.Action != ActSeen || it.Told || !strings.Contains(it.Reason, "dry run: would run ods-enforcer key ds-seen") || len(l.e.told) != 0 {
		t.Fatalf("dry run: %+v, told %v", it, l.e.told)
	}
	l.src.DryRun = false
	// Served by every server: ds-seen, recorded first.
	rep = l.run(t)
	if it := rep.Items[0]; it.Action != ActSeen || !it.Told || len(l.e.told) != 1 || l.e.told[0] != "key ds-seen --zone a.example --cka_id "+l.u.Key.Locator {
		t.Fatalf("seen: %+v, told %v", it, l.e.told)
	}
	book, err := l.src.Ledger.DS(t.Context())
	if err != nil || book.Find("a.example", l.u.Key.Locator, l.u.KeyTag, 13) == nil {
		t.Fatalf("not recorded: %v", err)
	}
	// The enforcer retracts it; the parent still serves it: wait.
	l.u.DSAtParent = enforcer.DSRetracted
	if rep := l.run(t); rep.Items[0].Action != ActWait {
		t.Fatalf("retracted, still served: %+v", rep.Items[0])
	}
	// Gone from the parent: recorded as vanished, ds-gone once the TTL
	// has passed since, not before.
	l.p.Serve(t, "a.example")
	rep = l.run(t)
	if it := rep.Items[0]; it.Action != ActWait || it.Vanished == nil || it.GoneAfter == nil {
		t.Fatalf("vanished: %+v", it)
	}
	l.now = l.now.Add(2 * time.Hour)
	rep = l.run(t)
	if it := rep.Items[0]; it.Action != ActGone || !it.Told || l.e.told[len(l.e.told)-1] != "key ds-gone --zone a.example --cka_id "+l.u.Key.Locator {
		t.Fatalf("gone: %+v, told %v", it, l.e.told)
	}
	// What it prints: one line per key, then what each server served; the
	// document carries its schema.
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil || !strings.Contains(b.String(), "zone a.example KSK ") || !strings.Contains(b.String(), "told ds-gone") {
		t.Errorf("text: %v\n%s", err, b.String())
	}
	doc, err := json.Marshal(Doc(rep))
	if err != nil || !strings.HasPrefix(string(doc), `{"schema":"ods-keyguard/parent-sync/1",`) {
		t.Errorf("document: %v %s", err, doc)
	}
}

// What cannot be established tells the enforcer nothing, and what fails
// is said: a server that does not answer, a command that fails, a
// configuration without the parent's servers, a zone the enforcer lacks.
func TestRunFailures(t *testing.T) {
	l := newSyncLab(t)
	l.p.Serve(t, "a.example", l.w.Line("a.example", l.u.Key))

	l.e.fail = errors.New("exit status 201: cannot connect")
	rep := l.run(t)
	if !rep.Failed() || rep.Unknown() || !strings.Contains(rep.Items[0].Reason, "ods-enforcer key ds-seen failed: exit status 201") {
		t.Fatalf("failed command: %+v", rep.Items[0])
	}
	if len(l.log.lines) == 0 || !strings.HasPrefix(l.log.lines[len(l.log.lines)-1], "err: parent sync: zone a.example KSK") {
		t.Errorf("log: %v", l.log.lines)
	}
	// The enforcer answers "0 KSKs changed" once, as ods-enforcerd 2.1
	// does now and then: told again, and it takes.
	l.e.fail, l.e.first = nil, "0 KSKs changed."
	retryAfter = time.Millisecond
	if rep := l.run(t); rep.Items[0].Action != ActSeen || !rep.Items[0].Told || len(l.e.told) != 3 {
		t.Fatalf("retried: %+v, told %v", rep.Items[0], l.e.told)
	}

	l2 := newSyncLab(t)
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.LocalAddr().String()
	dead.Close() // nobody answers there
	l2.src.Parent.Nameservers = []string{l2.p.Addr, addr}
	l2.src.Parent.Timeout = 300 * time.Millisecond
	l2.p.Serve(t, "a.example", l2.w.Line("a.example", l2.u.Key))
	rep = l2.run(t)
	if !rep.Unknown() || rep.Items[0].Told || len(l2.e.told) != 0 {
		t.Fatalf("a server not read: %+v, told %v", rep.Items[0], l2.e.told)
	}

	l2.src.Parent.Nameservers = nil
	if _, err := Run(t.Context(), l2.src); err == nil || !strings.HasPrefix(err.Error(), "parent sync needs [parent] nameservers") {
		t.Errorf("no nameservers: %v", err)
	}
	l2.src.Parent.Nameservers = []string{l2.p.Addr}
	l2.src.Zone = "b.example"
	if _, err := Run(t.Context(), l2.src); err == nil || err.Error() != `zone "b.example": not in the enforcer's database` {
		t.Errorf("unknown zone: %v", err)
	}
	// Nothing waiting on the parent: an empty report.
	l2.src.Zone = ""
	l2.u.DSAtParent = enforcer.DSSeen
	if rep, err := Run(t.Context(), l2.src); err != nil || len(rep.Items) != 0 {
		t.Errorf("nothing waiting: %+v %v", rep, err)
	}

}
