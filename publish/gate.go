// Package publish is the publish gate: run as the signer's NotifyCommand
// (ods-keyguard-publish ZONE FILE), it takes each version of a signed zone
// that the signer writes as a staging copy, reviews it (zonereview: it
// validates on its own; rule 1: every key that signed it has a verified
// backup, decided as check decides it; the step from the served version is
// safe for caches), and installs only a version that passes where the name
// servers read, atomically, then runs their reload command. A version that
// fails rule 1 only is held until a ceremony covers its keys or its
// deadline comes; one that fails validation is never published. Every
// decision is recorded in the ledger and logged; the zone's open problems
// are alerts that check reports.
//
// Everything a run does is bounded by Config.Timeout, within which it
// leaves the served version in place when it cannot finish.
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// Gate is the publish gate on one host.
type Gate struct {
	Config Config
	// StateDir is state_dir (the gate's state is in its publish folder);
	// StateGroup the group of what is made there (-1: leave it).
	StateDir   string
	StateGroup int
	Ledger     *ledger.Ledger
	// Source reads the enforcer's database (one zone at a time) and the
	// tokens.
	Source        inventory.Source
	Tokens        []hsmcheck.Token
	RequireBackup map[string]bool
	Log           Logger
	// By names who runs it, for the records: "signer", "release",
	// "backup done", or an operator.
	By string
	// Now is the clock (time.Now when nil); Workers the review's
	// parallelism (GOMAXPROCS when 0).
	Now     func() time.Time
	Workers int
}

// Logger takes one line per decision, by severity.
type Logger interface {
	Info(msg string)
	Warning(msg string)
	Err(msg string)
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now().UTC()
	}
	return time.Now().UTC()
}

// Result is what a run did with the version it was given.
type Result struct {
	Zone   string `json:"zone"`
	Serial uint32 `json:"serial"`
	// Action is a ledger action (published, held, refused, ...), or
	// Served (it was served already), Queued (another run holds the zone
	// and takes it) or Taken (another run took it already).
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Findings are the first findings of a refused or held version.
	Findings []Finding `json:"findings,omitempty"`
	// Keys are the keys that signed it.
	Keys []ledger.PublishKey `json:"keys,omitempty"`
	// ReloadFailed: installed, but the reload command failed.
	ReloadFailed bool `json:"reload_failed,omitempty"`
}

// Actions of a Result that are no ledger action.
const (
	Served = "served" // the version is what the name servers have already
	Queued = "queued" // another run holds the zone: it, or the next, takes this version
	Taken  = "taken"  // another run decided this version already
)

// candidate is a version kept in versions/ZONE, waiting for a decision:
// pending (handed over by the signer) or held.
type candidate struct {
	name   string
	held   bool
	serial uint32
}

// pendingSeq tells apart the versions one process keeps in a nanosecond.
var pendingSeq atomic.Int64

// Run is the gate for one version: zone as the signer names it, path the
// signer's output file. It keeps the file (the signer will replace it),
// takes the zone's lock, and decides every version of the zone that is
// waiting, newest first, this one among them: piled-up notifications
// collapse to the newest version that passes. dryRun reviews and says
// what it would do, and changes nothing.
func (g *Gate) Run(ctx context.Context, zone, path string, dryRun bool) (*Result, error) {
	zone = strings.TrimSuffix(zone, ".")
	res := &Result{Zone: zone}
	file, err := openStaging(path)
	if err != nil {
		if dryRun {
			return res, err
		}
		return g.failUnlocked(ctx, res, fmt.Errorf("the signer's file: %w", err))
	}
	defer file.Close()
	if dryRun {
		return g.dryRun(ctx, zone, file)
	}
	s, err := openStore(g.StateDir, g.StateGroup, true)
	if err != nil {
		return res, err
	}
	defer s.close()
	vdir, err := s.versions.Sub(statedir.SafeName(zone), true)
	if err != nil {
		return res, err
	}
	defer vdir.Close()
	name := fmt.Sprintf("pending-%020d-%d-%d", time.Now().UnixNano(), os.Getpid(), pendingSeq.Add(1))
	if _, err := vdir.Keep(file, name); err != nil {
		return g.failUnlocked(ctx, res, fmt.Errorf("keep the signer's file: %w", err))
	}
	res.Serial = peekSerial(file, zone)
	// The lock: at most 40% of the time left, so that a run that got it
	// has the rest for the review.
	unlock, err := s.locks.Flock(ctx, statedir.SafeName(zone)+".lock", share(ctx, 0.4))
	var busy *statedir.BusyError
	if errors.As(err, &busy) {
		res.Action = Queued
		res.Reason = "another run of the gate holds the zone: it takes this version, or the next run (or publish release) does"
		// What becomes of it is recorded by the run that decides it.
		g.Log.Warning(fmt.Sprintf("publish: zone %s serial %d: queued: %s", zone, res.Serial, res.Reason))
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer unlock()
	z, err := g.zone(ctx, s, vdir, zone)
	if err != nil {
		return res, err
	}
	results := z.process(ctx)
	if r, ok := results[name]; ok {
		return r, nil
	}
	if _, err := vdir.Read(name, 0); errors.Is(err, os.ErrNotExist) {
		res.Action, res.Reason = Taken, "another run of the gate decided this version already"
		return res, nil
	}
	res.Action = ledger.PublishTimeout
	res.Reason = "out of time before this version's turn: it waits for the next run or publish release"
	return res, nil
}

// share is part of the time left to ctx.
func share(ctx context.Context, part float64) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Minute
	}
	return time.Duration(float64(time.Until(d)) * part)
}

// openStaging opens the signer's output file for reading: a regular file,
// opened without waiting (a FIFO put there is refused, not read forever).
func openStaging(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, nil
}

// peekSerial reads the SOA serial from the start of a zone file (0 when it
// has none there), for the records of versions never reviewed.
func peekSerial(f *os.File, zone string) uint32 {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0
	}
	zp := dns.NewZoneParser(io.LimitReader(f, apexBytes), dns.Fqdn(zone), "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial
		}
		if !strings.EqualFold(rr.Header().Name, dns.Fqdn(zone)) {
			break
		}
	}
	return 0
}

// failUnlocked records a run that could not even keep its version: the
// served version stays.
func (g *Gate) failUnlocked(ctx context.Context, res *Result, err error) (*Result, error) {
	res.Action, res.Reason = ledger.PublishFailed, err.Error()
	g.Log.Err(fmt.Sprintf("publish: zone %s: %v: the served version stays", res.Zone, err))
	g.record(ctx, ledger.PublishRecord{Zone: res.Zone, Action: ledger.PublishFailed, Reason: err.Error()})
	return res, err
}

// recordTimeout bounds the writing of a record, which happens even when
// the run's time is up: what was done must be on record.
const recordTimeout = 3 * time.Second

// record adds records, within recordTimeout, whatever ctx says; what
// cannot be recorded is logged.
func (g *Gate) record(ctx context.Context, recs ...ledger.PublishRecord) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	for i := range recs {
		if recs[i].By == "" {
			recs[i].By = g.By
		}
	}
	if err := g.Ledger.AddPublish(rctx, recs...); err != nil {
		g.Log.Err(fmt.Sprintf("publish: zone %s: could not record what was decided (%s): %v", recs[0].Zone, recs[0].Action, err))
	}
}

// zoneRun is one zone under its lock: its state, its kept versions, the
// facts read for it.
type zoneRun struct {
	g     *Gate
	s     *store
	vdir  *statedir.Dir
	zone  string
	st    *zoneState
	f     *facts
	site  Site
	by    *bypass
	start time.Time
}

func (g *Gate) zone(ctx context.Context, s *store, vdir *statedir.Dir, zone string) (*zoneRun, error) {
	st, err := s.load(zone)
	if err != nil {
		// A state file that cannot be trusted is not replaced: nothing is
		// published for the zone until an operator looks at it, and check
		// says so.
		g.Log.Err(fmt.Sprintf("publish: zone %s: %v: nothing published", zone, err))
		s.alertOnly(zone, Alert{Zone: zone, Kind: AlertFailed, Critical: true, Since: g.now(), Reason: err.Error()})
		return nil, err
	}
	b, err := s.bypasses()
	if err != nil {
		return nil, err
	}
	z := &zoneRun{g: g, s: s, vdir: vdir, zone: zone, st: st, site: g.Config.For(zone), start: g.now()}
	z.by = b.active(zone, z.start)
	z.f = g.facts(ctx, zone, st)
	z.adopt(ctx)
	return z, nil
}

// adopt takes the file the name servers read, found there before the gate
// ever installed one (the gate put in front of a zone already served), as
// the served version: what a newer serial, the step and the deadline are
// judged against. It has been served since it was written.
func (z *zoneRun) adopt(ctx context.Context) {
	if z.st.Served != nil || z.st.Installing != nil || z.site.ZoneFile == "" {
		return
	}
	f, err := openStaging(z.site.ZoneFile)
	if err != nil {
		return // nothing served yet
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	h := sha256.New()
	rep, err := zonereview.Review(ctx, io.TeeReader(f, h), z.zone, zonereview.Options{Now: z.g.now(), Workers: z.g.Workers})
	if err != nil {
		z.g.Log.Warning(fmt.Sprintf("publish: zone %s: the file the name servers read, %s, cannot be read as a zone (%v): judged as if nothing were served", z.zone, z.site.ZoneFile, err))
		return
	}
	in := &installing{Serial: rep.Serial, SHA256: hex.EncodeToString(h.Sum(nil)), Path: z.site.ZoneFile, Since: fi.ModTime().UTC(),
		Review: summarize(rep), Margin: z.f.margin()}
	z.served(in)
	z.st.Served.Reloaded = true
	z.g.Log.Info(fmt.Sprintf("publish: zone %s: serial %d in %s, served before the gate, is the served version from now on", z.zone, rep.Serial, z.site.ZoneFile))
}

// candidates lists the zone's waiting versions, newest first: by serial
// (in serial number arithmetic, from the served one's), then by arrival.
// The held version is one of them.
func (z *zoneRun) candidates() ([]candidate, error) {
	names, err := z.vdir.List("")
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, n := range names {
		if strings.HasPrefix(n, "pending-") {
			out = append(out, candidate{name: n, serial: z.serialOf(n)})
		}
	}
	if h := z.st.Held; h != nil && h.File != "" {
		out = append(out, candidate{name: h.File, held: true, serial: h.Serial})
	}
	if len(out) == 0 {
		return nil, nil
	}
	// Distances from a reference serial order them: the served one, or
	// one well before the newest arrival's when nothing is served.
	ref := out[0].serial - 1<<30
	if s := z.st.Served; s != nil {
		ref = s.Serial
	}
	dist := func(c candidate) int64 {
		d := int64(c.serial - ref)
		if d >= 1<<31 {
			d -= 1 << 32 // older than the reference
		}
		return d
	}
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := dist(out[i]), dist(out[j]); a != b {
			return a > b
		}
		return !out[i].held && (out[j].held || out[i].name > out[j].name)
	})
	return out, nil
}

// serialOf is a kept version's SOA serial (0 when it cannot be read).
func (z *zoneRun) serialOf(name string) uint32 {
	f, err := z.vdir.OpenFile(name, syscall.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	return peekSerial(f, z.zone)
}

// save writes the zone's state, and says so in the log when it cannot:
// the served version is what the name servers have, whatever the state
// file says, and the next run finds out.
func (z *zoneRun) save() {
	z.st.LastRun = z.g.now()
	if z.st.Held != nil {
		z.st.Held.Deadline = deadlineOf(z.st)
	}
	if err := z.s.save(z.st, z.g.Config.OnDeadline); err != nil {
		z.g.Log.Err(fmt.Sprintf("publish: zone %s: could not write the gate's state: %v", z.zone, err))
	}
}

func (z *zoneRun) drop(name string) {
	if name == "" {
		return
	}
	if err := z.vdir.Remove(name); err != nil {
		z.g.Log.Err(fmt.Sprintf("publish: zone %s: %v", z.zone, err))
	}
}

func (z *zoneRun) rename(from, to string) error {
	return syscall.Renameat(z.vdir.Fd(), from, z.vdir.Fd(), to)
}
