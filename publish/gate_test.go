package publish

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory/inventorytest"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// The gate's decisions on real files, a real ledger in state_dir and the
// enforcer's state in memory (inventorytest); the signer lab scripts
// (testdata/script/publish_*.txtar) run the same with ods-signerd, BIND and
// delv.

const zone = "example.com"

// key is a signing key of the test zone, with its enforcer key.
type key struct {
	rr   *dns.DNSKEY
	priv crypto.Signer
	ek   *enforcer.Key
}

type lab struct {
	t      *testing.T
	dir    string
	g      *Gate
	fake   *inventorytest.Fake
	world  *inventorytest.World
	led    *ledger.Ledger
	now    time.Time
	ksk    key
	zsk    key
	target string
	reload string // what the reload command logs to
	log    *memLog
}

type memLog struct {
	mu    sync.Mutex
	lines []string
}

func (m *memLog) add(level, msg string) {
	m.mu.Lock()
	m.lines = append(m.lines, level+" "+msg)
	m.mu.Unlock()
}
func (m *memLog) Info(msg string)    { m.add("info", msg) }
func (m *memLog) Warning(msg string) { m.add("warning", msg) }
func (m *memLog) Err(msg string)     { m.add("err", msg) }

// newLab is a zone with a KSK and a ZSK in the enforcer (repository R, no
// RequireBackup), none backed up yet, and a gate that installs into
// $dir/ns and logs its reloads.
func newLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, now: time.Now().UTC().Truncate(time.Second), log: &memLog{}}
	l.world = inventorytest.NewWorld(t)
	l.fake = inventorytest.New(l.world.St)
	l.ksk = l.newKey("ksk", enforcer.KSK)
	l.zsk = l.newKey("zsk", enforcer.ZSK)
	led, err := ledger.New(context.Background(), ledger.Options{Dir: filepath.Join(dir, "state"), Group: -1, LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	l.led = led
	must(t, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
	l.target = filepath.Join(dir, "ns", zone+".zone")
	l.reload = filepath.Join(dir, "reloads")
	l.g = &Gate{
		Config: Config{Site: Site{Mode: Enforce, ZoneFile: filepath.Join(dir, "ns", "%zone.zone"), Owner: -1, Group: -1, FileMode: 0o644,
			Reload: []string{"sh", "-c", "echo %zone %file >> " + l.reload}},
			ReloadTimeout: 5 * time.Second, Timeout: 30 * time.Second, OnDeadline: DeadlinePublish, Zones: map[string]Site{}},
		StateDir: filepath.Join(dir, "state"), StateGroup: -1, Ledger: led, Source: l.fake,
		Tokens: inventorytest.Tokens("R"), RequireBackup: map[string]bool{"R": false}, Log: l.log, By: "signer",
		Now: func() time.Time { return l.now },
	}
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newKey makes a key pair, its DNSKEY, and an enforcer key of the zone
// with that key tag, live.
func (l *lab) newKey(name string, role enforcer.Role) key {
	flags := uint16(256)
	if role != enforcer.ZSK {
		flags = 257
	}
	rr := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone + ".", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 60}, Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := rr.Generate(256)
	must(l.t, err)
	ek := l.world.Key("R", fmt.Sprintf("%032x", len(l.world.St.Keys)+1), role, enforcer.BackupRequired)
	pub, _ := base64.StdEncoding.DecodeString(rr.PublicKey)
	l.world.Pairs[ek.Locator] = hsmcheck.Key{ID: ek.Locator, PublicKey: pub, Fingerprint: hsmcheck.FingerprintDNSKEY(pub)}
	u := l.world.Assign(zone, ek, enforcer.DSUnsubmitted, true)
	u.KeyTag = int(rr.KeyTag())
	return key{rr: rr, priv: priv.(crypto.Signer), ek: ek}
}

// backUp confirms a ceremony that covers the keys.
func (l *lab) backUp(keys ...key) {
	ctx := context.Background()
	s, err := l.led.Ceremonies(ctx)
	must(l.t, err)
	c := &ledger.Ceremony{ID: ledger.NewID("R", time.Now()), Repository: "R", Status: ledger.Open}
	for _, k := range keys {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: k.ek.Locator})
	}
	must(l.t, s.SaveOpen(ctx, c))
	c.Status = ledger.Confirmed
	c.Ended = time.Now().UTC()
	must(l.t, s.End(ctx, c))
}

// zoneOpts shape a signed version.
type zoneOpts struct {
	serial   uint32
	signers  []key // who signs the other RRsets (default the ZSK)
	dnskeys  []key // the DNSKEY RRset (default KSK and ZSK)
	expire   time.Duration
	tamper   string // "unknown-key", "unsigned-nsec"
	extraKey *key   // a key not in the DNSKEY RRset that signs the A RRset
}

// write signs a version of the zone and writes it as the signer's
// output, returning its path.
func (l *lab) write(o zoneOpts) string {
	l.t.Helper()
	origin := zone + "."
	if o.signers == nil {
		o.signers = []key{l.zsk}
	}
	if o.dnskeys == nil {
		o.dnskeys = []key{l.ksk, l.zsk}
	}
	if o.expire == 0 {
		o.expire = 14 * 24 * time.Hour
	}
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		must(l.t, err)
		return r
	}
	soa := rr(fmt.Sprintf("%s 60 IN SOA ns1.%s hostmaster.%s %d 60 60 600 60", origin, origin, origin, o.serial))
	ns := rr(fmt.Sprintf("%s 60 IN NS ns1.%s", origin, origin))
	a := rr(fmt.Sprintf("ns1.%s 60 IN A 192.0.2.1", origin))
	nsec1 := rr(fmt.Sprintf("%s 60 IN NSEC ns1.%s NS SOA RRSIG NSEC DNSKEY", origin, origin))
	nsec2 := rr(fmt.Sprintf("ns1.%s 60 IN NSEC %s A RRSIG NSEC", origin, origin))
	var dnskeys []dns.RR
	for _, k := range o.dnskeys {
		dnskeys = append(dnskeys, k.rr)
	}
	sign := func(set []dns.RR, k key) dns.RR {
		s := &dns.RRSIG{Hdr: dns.RR_Header{Name: set[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 60},
			KeyTag: k.rr.KeyTag(), SignerName: origin, Algorithm: k.rr.Algorithm,
			Inception: uint32(l.now.Add(-time.Hour).Unix()), Expiration: uint32(l.now.Add(o.expire).Unix())}
		must(l.t, s.Sign(k.priv, set))
		return s
	}
	var out []dns.RR
	out = append(out, soa)
	for _, k := range o.signers {
		out = append(out, sign([]dns.RR{soa}, k))
	}
	out = append(out, ns)
	for _, k := range o.signers {
		out = append(out, sign([]dns.RR{ns}, k))
	}
	out = append(out, dnskeys...)
	for _, k := range o.dnskeys {
		if k.rr.Flags == 257 {
			out = append(out, sign(dnskeys, k))
		}
	}
	out = append(out, nsec1)
	for _, k := range o.signers {
		out = append(out, sign([]dns.RR{nsec1}, k))
	}
	out = append(out, a)
	for _, k := range o.signers {
		out = append(out, sign([]dns.RR{a}, k))
	}
	if o.extraKey != nil {
		out = append(out, sign([]dns.RR{a}, *o.extraKey))
	}
	out = append(out, nsec2)
	if o.tamper != "unsigned-nsec" {
		for _, k := range o.signers {
			out = append(out, sign([]dns.RR{nsec2}, k))
		}
	}
	var b strings.Builder
	for _, r := range out {
		b.WriteString(r.String() + "\n")
	}
	path := filepath.Join(l.dir, fmt.Sprintf("signed-%d", o.serial))
	// The signer writes FILE.tmp and renames it: a new inode each time.
	must(l.t, os.WriteFile(path+".tmp", []byte(b.String()), 0o644))
	must(l.t, os.Rename(path+".tmp", path))
	return path
}

func (l *lab) run(path string) *Result {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), l.g.Config.Timeout)
	defer cancel()
	res, err := l.g.Run(ctx, zone, path, false)
	if err != nil {
		l.t.Fatalf("run %s: %v (%+v)", path, err, res)
	}
	return res
}

func (l *lab) release() *ReleaseReport {
	l.t.Helper()
	rep, err := l.g.Release(context.Background(), "")
	must(l.t, err)
	return rep
}

// servedSerial is the serial of the file the name servers read (0: none).
func (l *lab) servedSerial() uint32 {
	f, err := os.Open(l.target)
	if os.IsNotExist(err) {
		return 0
	}
	must(l.t, err)
	defer f.Close()
	return peekSerial(f, zone)
}

func (l *lab) actions() []string {
	recs, err := l.led.Publishes(context.Background(), zone)
	must(l.t, err)
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s %d", r.Action, r.Serial))
	}
	return out
}

func (l *lab) alerts() []Alert {
	as, err := Alerts(l.g.StateDir)
	must(l.t, err)
	return as
}

func (l *lab) expect(res *Result, action string, served uint32) {
	l.t.Helper()
	if res.Action != action {
		l.t.Fatalf("action %s (%s), want %s", res.Action, res.Reason, action)
	}
	if got := l.servedSerial(); got != served {
		l.t.Fatalf("the name servers have serial %d, want %d", got, served)
	}
}

// A new zone whose keys have no backup is held, off the name servers with
// no deadline; the ceremony's release publishes it.
func TestNewZoneHeldUntilTheCeremony(t *testing.T) {
	l := newLab(t)
	res := l.run(l.write(zoneOpts{serial: 1}))
	l.expect(res, ledger.PublishHeld, 0)
	as := l.alerts()
	if len(as) != 1 || as[0].Kind != AlertHeld || as[0].Deadline != nil || len(as[0].Keys) != 2 || as[0].Keys[0].BackedUp {
		t.Fatalf("alerts %+v", as)
	}
	if txt := as[0].Text(l.now); !strings.Contains(txt, "no version is served, so no deadline") || !strings.Contains(txt, "without a verified backup (rule 1)") {
		t.Errorf("text: %s", txt)
	}
	// Releasing before the ceremony changes nothing.
	if rep := l.release(); rep.Left != 1 || l.servedSerial() != 0 {
		t.Fatalf("release before the ceremony: %+v", rep)
	}
	l.backUp(l.ksk, l.zsk)
	rep := l.release()
	if rep.Left != 0 || len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishPublished || l.servedSerial() != 1 {
		t.Fatalf("release after the ceremony: %+v, served %d", rep.Results, l.servedSerial())
	}
	if as := l.alerts(); len(as) != 0 {
		t.Errorf("alerts left: %+v", as)
	}
	if got := strings.Join(l.actions(), ","); got != "held 1,published 1" {
		t.Errorf("records: %s", got)
	}
	b, _ := os.ReadFile(l.reload)
	if string(b) != zone+" "+l.target+"\n" {
		t.Errorf("reloads: %q", b)
	}
	// The next version: the keys are known backed up, no ceremony read.
	l.now = l.now.Add(time.Hour)
	res = l.run(l.write(zoneOpts{serial: 2}))
	l.expect(res, ledger.PublishPublished, 2)
	if n := l.fake.Reads["R"]; n != 0 {
		t.Errorf("the token was read %d times: key tags that do not collide need no HSM", n)
	}
}

// What fails validation is never published, whatever the deadline; an
// older serial never replaces a newer one.
func TestRefusedAndStale(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	l.expect(l.run(l.write(zoneOpts{serial: 10})), ledger.PublishPublished, 10)
	stranger := l.newKey("stranger", enforcer.ZSK)
	for i, o := range []zoneOpts{
		{serial: 11, extraKey: &stranger},
		{serial: 12, tamper: "unsigned-nsec"},
		{serial: 13, expire: -time.Hour},
	} {
		res := l.run(l.write(o))
		l.expect(res, ledger.PublishRefused, 10)
		if len(res.Findings) == 0 {
			t.Errorf("case %d: no findings", i)
		}
	}
	as := l.alerts()
	if len(as) != 1 || as[0].Kind != AlertRefused || as[0].Serial != 13 || !strings.Contains(as[0].Text(l.now), "expired") {
		t.Errorf("alerts %+v", as)
	}
	// Past any deadline: still never published.
	l.now = l.now.Add(20 * 24 * time.Hour)
	l.release()
	if l.servedSerial() != 10 {
		t.Fatalf("served %d", l.servedSerial())
	}
	l.now = l.now.Add(-20 * 24 * time.Hour)
	l.expect(l.run(l.write(zoneOpts{serial: 9})), ledger.PublishStale, 10)
	l.expect(l.run(l.write(zoneOpts{serial: 14})), ledger.PublishPublished, 14)
	if as := l.alerts(); len(as) != 0 {
		t.Errorf("a newer version served, alerts left: %+v", as)
	}
}

// A ZSK rollover onto a key made after the ceremony: held; at its
// deadline published (on_deadline = "publish"), rule 1 CRITICAL until a
// ceremony covers the key.
func TestHeldUntilTheDeadline(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	l.g.Config.Margin = time.Hour
	l.expect(l.run(l.write(zoneOpts{serial: 1, expire: 5 * time.Hour})), ledger.PublishPublished, 1)
	zsk2 := l.newKey("zsk2", enforcer.ZSK)
	// Published first (the enforcer publishes a new ZSK before it signs):
	// a DNSKEY that signs nothing needs no backup yet.
	l.now = l.now.Add(10 * time.Minute)
	l.expect(l.run(l.write(zoneOpts{serial: 2, expire: 5 * time.Hour, dnskeys: []key{l.ksk, l.zsk, zsk2}})), ledger.PublishPublished, 2)
	l.now = l.now.Add(10 * time.Minute)
	res := l.run(l.write(zoneOpts{serial: 3, signers: []key{zsk2}, dnskeys: []key{l.ksk, l.zsk, zsk2}, expire: 5 * time.Hour}))
	l.expect(res, ledger.PublishHeld, 2)
	as := l.alerts()
	if len(as) != 1 || as[0].Deadline == nil {
		t.Fatalf("alerts %+v", as)
	}
	// Serial 2's signatures expire 5h after it was signed, less the
	// margin of an hour.
	l.now = as[0].Deadline.Add(time.Second)
	rep := l.release()
	if len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishDeadline || l.servedSerial() != 3 {
		t.Fatalf("at the deadline: %+v", rep.Results)
	}
	as = l.alerts()
	if len(as) != 1 || as[0].Kind != AlertUnbacked || !strings.Contains(as[0].Text(l.now), zsk2.ek.Locator) {
		t.Fatalf("after the deadline: %+v", as)
	}
	l.backUp(zsk2)
	l.release()
	if as := l.alerts(); len(as) != 0 {
		t.Errorf("after the ceremony: %+v", as)
	}
	if got := strings.Join(l.actions(), ","); got != "published 1,published 2,held 3,deadline 3,covered 3" {
		t.Errorf("records: %s", got)
	}
}

// Report mode publishes what enforce mode would hold, and says so.
func TestReportMode(t *testing.T) {
	l := newLab(t)
	l.g.Config.Site.Mode = Report
	l.expect(l.run(l.write(zoneOpts{serial: 1})), ledger.PublishReported, 1)
	as := l.alerts()
	kinds := map[string]bool{}
	for _, a := range as {
		kinds[a.Kind] = true
	}
	if !kinds[AlertReported] || !kinds[AlertUnbacked] || kinds[AlertHeld] {
		t.Fatalf("alerts %+v", as)
	}
}

// Notifications at once for one zone: the newest version is what the name
// servers end with, and no run replaced a newer serial with an older one.
func TestNotificationsAtOnce(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	var paths []string
	for s := uint32(1); s <= 6; s++ {
		paths = append(paths, l.write(zoneOpts{serial: s}))
	}
	var wg sync.WaitGroup
	results := make([]*Result, len(paths))
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := l.g.Run(ctx, zone, p, false)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if got := l.servedSerial(); got != 6 {
		t.Fatalf("served %d, want 6 (%v)", got, l.actions())
	}
	last := uint32(0)
	for _, a := range l.actions() {
		var act string
		var serial uint32
		fmt.Sscanf(a, "%s %d", &act, &serial)
		if act == ledger.PublishPublished {
			if serial <= last {
				t.Errorf("serial %d published after %d: %v", serial, last, l.actions())
			}
			last = serial
		}
	}
}

// A reload that fails leaves the file installed and says so; release runs
// it again.
func TestReloadFails(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	l.g.Config.Site.Reload = []string{"sh", "-c", "echo rndc: connection refused >&2; exit 1"}
	res := l.run(l.write(zoneOpts{serial: 1}))
	l.expect(res, ledger.PublishPublished, 1)
	if !strings.Contains(res.Reason, "installed, but the reload failed (the file is new, the server's copy may be old)") || !strings.Contains(res.Reason, "connection refused") {
		t.Errorf("reason: %s", res.Reason)
	}
	as := l.alerts()
	if len(as) != 1 || as[0].Kind != AlertFailed {
		t.Fatalf("alerts %+v", as)
	}
	l.g.Config.Site.Reload = []string{"true"}
	l.release()
	if as := l.alerts(); len(as) != 0 {
		t.Errorf("after the reload: %+v", as)
	}
	// A reload that hangs is killed at reload_timeout.
	l.g.Config.Site.Reload = []string{"sleep", "60"}
	l.g.Config.ReloadTimeout = 300 * time.Millisecond
	start := time.Now()
	res = l.run(l.write(zoneOpts{serial: 2}))
	if d := time.Since(start); d > 10*time.Second || !strings.Contains(res.Reason, "did not finish in time, killed") {
		t.Errorf("a hanging reload: %s after %s", res.Reason, d)
	}
}

// A bypass publishes what the gate held, recorded and alarmed.
func TestBypass(t *testing.T) {
	l := newLab(t)
	l.expect(l.run(l.write(zoneOpts{serial: 1})), ledger.PublishHeld, 0)
	must(t, l.g.Bypass(context.Background(), zone, "the ceremony is tomorrow", "alice", l.now.Add(time.Hour), false))
	l.release()
	if l.servedSerial() != 1 {
		t.Fatalf("served %d", l.servedSerial())
	}
	kinds := map[string]bool{}
	for _, a := range l.alerts() {
		kinds[a.Kind] = true
	}
	if !kinds[AlertBypass] || !kinds[AlertUnbacked] {
		t.Errorf("alerts %+v", l.alerts())
	}
	must(t, l.g.Bypass(context.Background(), zone, "done", "alice", time.Time{}, true))
	if got := strings.Join(l.actions(), ","); got != "held 1,bypass 0,published 1,bypass-end 0" {
		t.Errorf("records: %s", got)
	}
}

// A full disk while installing leaves the served version, and says so.
func TestInstallFails(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	l.expect(l.run(l.write(zoneOpts{serial: 1})), ledger.PublishPublished, 1)
	must(t, os.Chmod(filepath.Join(l.dir, "ns"), 0o555))
	defer os.Chmod(filepath.Join(l.dir, "ns"), 0o755)
	if os.Geteuid() == 0 {
		// root writes anyway: a target folder that is no folder then.
		l.g.Config.Site.ZoneFile = filepath.Join(l.reload+".nofolder", "%zone.zone")
		must(t, os.WriteFile(l.reload+".nofolder", nil, 0o644))
	}
	res, err := l.g.Run(context.Background(), zone, l.write(zoneOpts{serial: 2}), false)
	if err != nil || res.Action != ledger.PublishFailed || l.servedSerial() != 1 {
		t.Fatalf("%v %+v served %d", err, res, l.servedSerial())
	}
	if as := l.alerts(); len(as) != 1 || as[0].Kind != AlertFailed {
		t.Errorf("alerts %+v", as)
	}
}

// A held version whose signatures aged with the served version's still goes
// out at its deadline: it is no worse than what is served. With on_deadline
// "hold" it stays held, and once its signatures have expired it is dropped.
func TestHeldAgedAtTheDeadline(t *testing.T) {
	for _, mode := range []string{DeadlinePublish, DeadlineHold} {
		l := newLab(t)
		l.g.Config.OnDeadline = mode
		l.backUp(l.ksk, l.zsk)
		l.g.Config.Margin = time.Hour
		zsk2 := l.newKey("zsk2", enforcer.ZSK)
		served := l.write(zoneOpts{serial: 2, expire: 5 * time.Hour, dnskeys: []key{l.ksk, l.zsk, zsk2}})
		held := l.write(zoneOpts{serial: 3, signers: []key{l.zsk, zsk2}, dnskeys: []key{l.ksk, l.zsk, zsk2}, expire: 5 * time.Hour})
		l.expect(l.run(served), ledger.PublishPublished, 2)
		l.now = l.now.Add(time.Minute)
		l.expect(l.run(held), ledger.PublishHeld, 2)
		l.now = l.now.Add(4*time.Hour + time.Second)
		rep := l.release()
		switch mode {
		case DeadlinePublish:
			if len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishDeadline || !strings.Contains(rep.Results[0].Reason, "its signatures expire within the margin") || l.servedSerial() != 3 {
				t.Fatalf("publish: %+v", rep.Results)
			}
		case DeadlineHold:
			if len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishHeld || l.servedSerial() != 2 {
				t.Fatalf("hold: %+v", rep.Results)
			}
			l.now = l.now.Add(2 * time.Hour)
			rep = l.release()
			if len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishSuperseded || rep.Left != 0 {
				t.Fatalf("hold, expired: %+v", rep.Results)
			}
		}
	}
}

// The DNSKEY RRset must be signed by a key whose DS the parent has: one
// the enforcer has submitted but the DS guard withheld does not count, and
// a version anchored only by it would be bogus: refused.
func TestDNSKEYAnchoredAtTheParent(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	ksk2 := l.newKey("ksk2", enforcer.KSK)
	l.backUp(l.ksk, l.zsk, ksk2)
	for _, u := range l.world.St.Zone(zone).Keys {
		switch u.Key {
		case l.ksk.ek:
			u.DSAtParent = enforcer.DSSeen
		case ksk2.ek:
			u.DSAtParent = enforcer.DSSubmitted
		}
	}
	fp := func(k key) string { return fingerprint(k.rr) }
	must(t, l.led.AddDS(ctx,
		ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Forwarded, Zone: zone, KeyTag: int(l.ksk.rr.KeyTag()), Algorithm: 13, Locator: l.ksk.ek.Locator, Fingerprint: fp(l.ksk), Line: "x", By: "hook"},
		ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Withheld, Zone: zone, KeyTag: int(ksk2.rr.KeyTag()), Algorithm: 13, Locator: ksk2.ek.Locator, Fingerprint: fp(ksk2), Line: "y", By: "hook", Reason: "not yet"}))
	// Anchored by the KSK whose DS went to the parent: published.
	l.expect(l.run(l.write(zoneOpts{serial: 1, dnskeys: []key{l.ksk, l.zsk, ksk2}})), ledger.PublishPublished, 1)
	// Anchored only by the one whose DS was withheld: refused.
	l.now = l.now.Add(time.Hour)
	res := l.run(l.write(zoneOpts{serial: 2, dnskeys: []key{ksk2, l.zsk}}))
	l.expect(res, ledger.PublishRefused, 1)
	if len(res.Findings) == 0 || res.Findings[0].Code != "parent-ds" {
		t.Errorf("findings %+v", res.Findings)
	}
}

// The gate put in front of a zone already served: the file the name
// servers read is the served version, its deadline the one a held version
// waits for, and an older serial does not replace it.
func TestAdoptTheServedFile(t *testing.T) {
	l := newLab(t)
	l.g.Config.Margin = time.Hour
	b, err := os.ReadFile(l.write(zoneOpts{serial: 5, expire: 3 * time.Hour}))
	must(t, err)
	must(t, os.WriteFile(l.target, b, 0o644))
	l.expect(l.run(l.write(zoneOpts{serial: 4})), ledger.PublishStale, 5)
	res := l.run(l.write(zoneOpts{serial: 6}))
	l.expect(res, ledger.PublishHeld, 5)
	as := l.alerts()
	if len(as) != 1 || as[0].Deadline == nil || !as[0].Deadline.Equal(l.now.Add(2*time.Hour)) {
		t.Fatalf("alerts %+v", as)
	}
}

// A zone state file damaged or edited by hand is not replaced: nothing is
// published for the zone, and check says why, naming the file.
func TestDamagedState(t *testing.T) {
	l := newLab(t)
	l.backUp(l.ksk, l.zsk)
	l.expect(l.run(l.write(zoneOpts{serial: 1})), ledger.PublishPublished, 1)
	path := filepath.Join(l.g.StateDir, "publish", "zones", zone+".json")
	b, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path, []byte(strings.Replace(string(b), `"serial":1`, `"serial":9`, 1)), 0o640))
	if _, err := l.g.Run(context.Background(), zone, l.write(zoneOpts{serial: 2}), false); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("got %v", err)
	}
	if l.servedSerial() != 1 {
		t.Fatalf("served %d", l.servedSerial())
	}
	as := l.alerts()
	if len(as) != 1 || as[0].Kind != AlertFailed || !strings.Contains(as[0].Reason, path+": checksum mismatch (damaged or edited by hand)") {
		t.Errorf("alerts %+v", as)
	}
}

// Report mode publishes even a version that fails validation, as
// OpenDNSSEC alone would, and that is CRITICAL; a file that is no zone at
// all is not published even there.
func TestReportModeInvalid(t *testing.T) {
	l := newLab(t)
	l.g.Config.Site.Mode = Report
	l.backUp(l.ksk, l.zsk)
	l.expect(l.run(l.write(zoneOpts{serial: 1, tamper: "unsigned-nsec"})), ledger.PublishReported, 1)
	as := l.alerts()
	if len(as) != 1 || as[0].Kind != AlertReported || !as[0].Critical || !strings.Contains(as[0].Text(l.now), "would have refused it: fails validation") {
		t.Fatalf("alerts %+v", as)
	}
	junk := filepath.Join(l.dir, "junk")
	must(t, os.WriteFile(junk, []byte("this is no zone\n"), 0o644))
	l.expect(l.run(junk), ledger.PublishRefused, 1)
	if as := l.alerts(); len(as) != 2 {
		t.Fatalf("alerts %+v", as)
	}
	// A clean version, newer than both, settles them.
	l.expect(l.run(l.write(zoneOpts{serial: 2})), ledger.PublishPublished, 2)
	if as := l.alerts(); len(as) != 0 {
		t.Errorf("alerts %+v", as)
	}
}

// Two keys of the zone share the ZSK's key tag and algorithm: the one that
// signed is told apart by its public key on the token, and rule 1 is
// decided for it, not for the other.
func TestKeyTagCollision(t *testing.T) {
	l := newLab(t)
	decoy := l.newKey("decoy", enforcer.ZSK)
	for _, u := range l.world.St.Zone(zone).Keys {
		if u.Key == decoy.ek {
			u.KeyTag = int(l.zsk.rr.KeyTag())
		}
	}
	pair := func(k key) hsmcheck.Key { return l.world.Pairs[k.ek.Locator] }
	l.fake.Put([]hsmcheck.Key{pair(l.ksk), pair(l.zsk), pair(decoy)}, "R")
	// Only the decoy is backed up (with the KSK): held, naming the ZSK.
	l.backUp(l.ksk, decoy)
	res := l.run(l.write(zoneOpts{serial: 1}))
	l.expect(res, ledger.PublishHeld, 0)
	if !strings.Contains(res.Reason, "key "+l.zsk.ek.Locator+": in no confirmed backup ceremony") || l.fake.Reads["R"] == 0 {
		t.Fatalf("reason %s, token reads %d", res.Reason, l.fake.Reads["R"])
	}
	// The ZSK backed up too: published.
	l.backUp(l.zsk)
	if rep := l.release(); len(rep.Results) != 1 || rep.Results[0].Action != ledger.PublishPublished {
		t.Fatalf("%+v", rep.Results)
	}
}
