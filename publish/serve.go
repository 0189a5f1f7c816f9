package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// installing is written in the zone's state before the rename and cleared
// after it: a run that finds it knows the last one died in between, and
// finds out from the file which version the name servers have.
type installing struct {
	Serial uint32        `json:"serial"`
	SHA256 string        `json:"sha256"`
	Path   string        `json:"path"`
	Since  time.Time     `json:"since"`
	Review summary       `json:"review"`
	Margin time.Duration `json:"margin"`
}

// publish installs a version where the name servers read it, runs their
// reload command, and records it with action and reason.
func (z *zoneRun) publish(ctx context.Context, c candidate, file *os.File, v *verdict, vers *version, action, reason string, res *Result) string {
	g := z.g
	res.Action, res.Reason = action, reason
	vers.Reason = reason
	if err := z.sameAsTarget(file); err != nil {
		return z.installFailed(ctx, vers, res, err)
	}
	margin := z.f.margin()
	z.st.Installing = &installing{Serial: v.rep.Serial, SHA256: v.sha256, Path: z.site.ZoneFile, Since: g.now(), Review: summarize(v.rep), Margin: margin}
	z.save()
	if err := install(ctx, file, z.site); err != nil {
		z.st.Installing = nil
		return z.installFailed(ctx, vers, res, err)
	}
	// The state is written once the reload is done: a crash before that
	// leaves Installing, which the next run finishes (recover).
	in := z.st.Installing
	z.served(in)
	z.drop(c.name)
	vers.File = ""
	if c.held {
		z.st.Held = nil
	}
	if h := z.st.Held; h != nil && !newer(h.Serial, v.rep.Serial) && h.SHA256 != v.sha256 {
		z.drop(h.File)
		g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishSuperseded, Serial: h.Serial, SHA256: h.SHA256,
			Reason: fmt.Sprintf("serial %d was published", v.rep.Serial)})
		z.st.Held = nil
	}
	if r := z.st.Refused; r != nil && !newer(r.Serial, v.rep.Serial) {
		z.drop(r.File)
		z.st.Refused = nil
	}
	// What is served now, as rule 1 sees it.
	z.st.Unbacked = nil
	if anyUnbacked(v.keys) {
		how := "published in report mode"
		switch {
		case z.by != nil:
			how = fmt.Sprintf("published through a bypass by %s: %s", z.by.By, z.by.Reason)
		case action == ledger.PublishDeadline:
			how = "published at its deadline"
		}
		z.st.Unbacked = &version{Serial: v.rep.Serial, SHA256: v.sha256, Since: vers.Since, Decided: g.now(), Keys: v.keys, Reason: how}
	}
	z.st.Reported = nil
	if action == ledger.PublishReported {
		z.st.Reported = vers
	}
	z.st.Failure = nil
	rerr := z.reload(ctx)
	z.st.Installing = nil
	if rerr != nil {
		reason += "; " + rerr.Error()
		res.Reason, res.ReloadFailed = reason, true
		vers.Reason = reason
	}
	z.save()
	level := g.Log.Info
	if action != ledger.PublishPublished || z.by != nil {
		level = g.Log.Warning
	}
	if rerr != nil {
		level = g.Log.Err
	}
	level(fmt.Sprintf("publish: zone %s serial %d: %s to %s: %s", z.zone, v.rep.Serial, action, z.site.ZoneFile, reason))
	z.recordVersion(ctx, action, vers, z.site.Mode)
	return action
}

// sameAsTarget refuses to install over the file itself: zone_file must not
// be the signer's output (nor a link to the kept copy).
func (z *zoneRun) sameAsTarget(file *os.File) error {
	var a, b syscall.Stat_t
	if err := syscall.Fstat(int(file.Fd()), &a); err != nil {
		return err
	}
	if err := syscall.Stat(z.site.ZoneFile, &b); err == nil && a.Dev == b.Dev && a.Ino == b.Ino {
		return fmt.Errorf("zone_file %s is the signer's own output file: the signer's <Output> must be a staging file of its own, zone_file where the name servers read", z.site.ZoneFile)
	}
	return nil
}

func (z *zoneRun) installFailed(ctx context.Context, v *version, res *Result, err error) string {
	res.Action = ledger.PublishFailed
	res.Reason = fmt.Sprintf("could not install serial %d: %v: the served version stays", v.Serial, err)
	v.Reason = res.Reason
	z.st.Failure = &failure{Kind: AlertFailed, Serial: v.Serial, Since: z.g.now(), Reason: res.Reason}
	z.save()
	z.g.Log.Err(fmt.Sprintf("publish: zone %s serial %d: %s", z.zone, v.Serial, res.Reason))
	z.recordVersion(ctx, ledger.PublishFailed, v, z.site.Mode)
	// The version stays kept: the next run, or publish release, tries it
	// again.
	return ledger.PublishFailed
}

// served makes in the state what the name servers have now, and moves
// SafeStep's proof on: the keys of the version it replaced stopped
// signing there now, the keys new in the DNSKEY RRset appear now.
func (z *zoneRun) served(in *installing) {
	st, now := z.st, in.Since
	if old := st.Served; old != nil {
		if st.LastSigned == nil {
			st.LastSigned = map[uint16]time.Time{}
		}
		for _, u := range old.Review.Signers {
			if u.SignedOther {
				st.LastSigned[u.Tag] = now
			}
		}
	}
	since := map[uint16]time.Time{}
	for _, k := range in.Review.Keys {
		if t, ok := st.PublishedSince[k.Tag]; ok && st.Served != nil && hasTag(st.Served.Review, k.Tag) {
			since[k.Tag] = t
		} else {
			since[k.Tag] = now
		}
	}
	st.PublishedSince = since
	// Keys that have been out of every version for a day are forgotten.
	for tag, t := range st.LastSigned {
		if now.Sub(t) > 24*time.Hour && !hasTag(in.Review, tag) {
			delete(st.LastSigned, tag)
		}
	}
	var dl time.Time
	if !in.Review.EarliestExpiration.IsZero() {
		dl = in.Review.EarliestExpiration.Add(-in.Margin)
	}
	st.Served = &served{Serial: in.Serial, SHA256: in.SHA256, Path: in.Path, Since: now, Review: in.Review, Deadline: dl}
}

func hasTag(s summary, tag uint16) bool {
	for _, k := range s.Keys {
		if k.Tag == tag {
			return true
		}
	}
	return false
}

// reload runs the reload command within [publish] reload_timeout and the
// run's own bound, and says in the state whether the server has the file.
func (z *zoneRun) reload(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, z.g.Config.ReloadTimeout)
	defer cancel()
	err := reload(rctx, z.site.Reload, z.zone, z.site.ZoneFile)
	z.st.Served.Reloaded = err == nil
	if err != nil {
		z.st.Failure = &failure{Kind: AlertFailed, Serial: z.st.Served.Serial, Since: z.g.now(),
			Reason: fmt.Sprintf("serial %d is installed in %s, but the reload failed: the file is new, the server's copy may be old: %v", z.st.Served.Serial, z.site.ZoneFile, err)}
		return fmt.Errorf("installed, but the reload failed (the file is new, the server's copy may be old): %w", err)
	}
	return nil
}

// reloadAgain runs the reload command again for a served version whose
// reload failed.
func (z *zoneRun) reloadAgain(ctx context.Context) {
	s := z.st.Served
	if err := z.reload(ctx); err != nil {
		z.g.Log.Err(fmt.Sprintf("publish: zone %s serial %d: %v", z.zone, s.Serial, err))
		return
	}
	z.st.Failure = nil
	z.g.Log.Info(fmt.Sprintf("publish: zone %s serial %d: reloaded", z.zone, s.Serial))
	z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishReloaded, Serial: s.Serial, SHA256: s.SHA256,
		Reason: "the reload command had failed after the install; it succeeded now"})
}

// recover finishes what a run that died while installing left: the target
// file says which version the name servers have.
func (z *zoneRun) recover(ctx context.Context) {
	in := z.st.Installing
	if in == nil {
		return
	}
	z.st.Installing = nil
	cleanTemp(in.Path)
	sum, err := fileSHA256(in.Path)
	if err != nil || sum != in.SHA256 {
		z.g.Log.Warning(fmt.Sprintf("publish: zone %s: a run died before it installed serial %d: the served version stays", z.zone, in.Serial))
		return
	}
	z.served(in)
	z.g.Log.Warning(fmt.Sprintf("publish: zone %s: a run died after it installed serial %d: reloading now", z.zone, in.Serial))
	err = z.reload(ctx)
	reason := "found installed after a run died: reloaded"
	if err != nil {
		reason = "found installed after a run died; " + err.Error()
	} else {
		z.st.Failure = nil
	}
	z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishPublished, Serial: in.Serial, SHA256: in.SHA256, Reason: reason})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// settle looks at what is served once more: a reload that failed is tried
// again, and keys served without a backup that a ceremony covers since
// settle the zone's rule 1 alert.
func (z *zoneRun) settle(ctx context.Context) {
	if s := z.st.Served; s != nil && !s.Reloaded && z.st.Failure != nil && ctx.Err() == nil {
		z.reloadAgain(ctx)
	}
	u := z.st.Unbacked
	if u == nil || z.f.enfErr != nil {
		return
	}
	cov, err := z.f.coverage(ctx)
	if err != nil {
		return
	}
	zone := z.f.zoneOf()
	all := true
	for i, k := range u.Keys {
		if k.BackedUp {
			continue
		}
		var key *enforcer.Key
		for _, use := range zone.Keys {
			if use.Key.Locator == k.Locator {
				key = use.Key
			}
		}
		if key == nil || rules.NotBackedUp(cov, z.g.RequireBackup, key) != "" {
			all = false
			continue
		}
		u.Keys[i].BackedUp, u.Keys[i].Reason = true, ""
	}
	if all {
		z.g.Log.Info(fmt.Sprintf("publish: zone %s serial %d: every key that signed it is backed up now", z.zone, u.Serial))
		z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishCovered, Serial: u.Serial, SHA256: u.SHA256, Keys: u.Keys,
			Reason: "every key that signed the served version is backed up now (rule 1 holds again)"})
		z.st.Unbacked = nil
	}
}
