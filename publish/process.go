package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// process decides the zone's waiting versions, newest first, until one is
// published or the time is up; what is older than a published version is
// superseded. It returns what became of each version it decided, by file
// name. The caller holds the zone's lock.
func (z *zoneRun) process(ctx context.Context) map[string]*Result {
	out := map[string]*Result{}
	g := z.g
	z.recover(ctx)
	cands, err := z.candidates()
	if err != nil {
		g.Log.Err(fmt.Sprintf("publish: zone %s: %v", z.zone, err))
		return out
	}
	published, heldNow := false, false
	for _, c := range cands {
		res := &Result{Zone: z.zone, Serial: c.serial}
		switch {
		case c.held && (heldNow || z.st.Held == nil || z.st.Held.File != c.name):
			// A newer version took its place in this run (and said so).
			continue
		case published:
			out[c.name] = res
			res.Action, res.Reason = ledger.PublishSuperseded, "a newer version was published"
			z.supersede(ctx, c, res)
			continue
		case ctx.Err() != nil:
			out[c.name] = res
			res.Action, res.Reason = ledger.PublishTimeout, "out of time before its turn: it waits for the next run or publish release"
			continue
		}
		file, err := z.vdir.OpenFile(c.name, syscall.O_RDONLY, 0)
		if err != nil {
			g.Log.Err(fmt.Sprintf("publish: zone %s: kept version %s: %v", z.zone, c.name, err))
			continue
		}
		out[c.name] = res
		v, err := z.g.decide(ctx, z.f, file, z.st)
		if err != nil {
			z.failed(ctx, c, file, res, err)
			file.Close()
			continue
		}
		res.Serial, res.Keys = v.rep.Serial, v.keys
		if c.held && v.invalid && onlyTime(v) {
			// Not damaged: its signatures aged while it was held, as the
			// served version's did.
			if !z.aged(v) {
				file.Close()
				res.Action = ledger.PublishSuperseded
				res.Reason = "held until its signatures expired: the signer's next version, with renewed signatures, takes its place"
				z.supersede(ctx, c, res)
				continue
			}
		}
		switch z.act(ctx, c, file, v, res) {
		case ledger.PublishPublished, ledger.PublishReported, ledger.PublishDeadline:
			published = true
		case ledger.PublishHeld:
			heldNow = true
		}
		file.Close()
	}
	z.settle(ctx)
	z.save()
	return out
}

// act carries out the verdict on one version and returns the action.
func (z *zoneRun) act(ctx context.Context, c candidate, file *os.File, v *verdict, res *Result) string {
	g := z.g
	vers := &version{File: c.name, Serial: v.rep.Serial, SHA256: v.sha256, Since: z.since(c), Decided: g.now(), Keys: v.keys,
		Findings: append(append([]Finding(nil), v.findings...), v.stepFindings...), Reason: v.reason,
		Rule1: v.rule1, Step: v.step, Invalid: v.invalid}
	res.Findings, res.Reason = vers.Findings, v.reason
	switch {
	case v.same:
		res.Action = Served
		z.drop(c.name)
		if c.held {
			z.st.Held = nil
		}
		if s := z.st.Served; s != nil && !s.Reloaded {
			z.reloadAgain(ctx)
		}
		g.Log.Info(fmt.Sprintf("publish: zone %s serial %d: %s", z.zone, v.rep.Serial, v.reason))
		return Served
	case v.stale:
		res.Action = ledger.PublishStale
		z.drop(c.name)
		if c.held {
			z.st.Held = nil
		}
		g.Log.Warning(fmt.Sprintf("publish: zone %s serial %d: not published: %s", z.zone, v.rep.Serial, v.reason))
		z.recordVersion(ctx, ledger.PublishStale, vers, "")
		return ledger.PublishStale
	}
	mode := z.site.Mode
	switch {
	case z.by != nil:
		reason := fmt.Sprintf("gate bypassed by %s: %s", z.by.By, z.by.Reason)
		if !v.passes() {
			reason += "; enforce mode would have " + wouldHave(v)
		}
		return z.publish(ctx, c, file, v, vers, ledger.PublishPublished, reason, res)
	case mode == Report && !v.passes():
		return z.publish(ctx, c, file, v, vers, ledger.PublishReported, wouldHave(v), res)
	case v.passes():
		reason := "passes: validates, every signing key backed up, a safe step"
		if v.aged {
			reason = "every signing key backed up, a safe step; " + v.reason
		}
		if v.sameSerial {
			reason += fmt.Sprintf("; the served version's serial (%d) with other content: secondaries that transfer by serial will not see it", v.rep.Serial)
		}
		return z.publish(ctx, c, file, v, vers, ledger.PublishPublished, reason, res)
	case v.invalid:
		return z.refuse(ctx, c, vers, res)
	}
	// Rule 1 or the step: held, unless its deadline has come.
	dl := deadlineOf(z.st)
	if dl != nil && !g.now().Before(*dl) && g.Config.OnDeadline == DeadlinePublish {
		return z.publish(ctx, c, file, v, vers, ledger.PublishDeadline,
			fmt.Sprintf("its deadline %s has come (the served version's signatures expire at %s): %s", dl.Format(time.RFC3339),
				z.st.Served.Review.EarliestExpiration.Format(time.RFC3339), v.reason), res)
	}
	return z.hold(ctx, c, vers, res)
}

// wouldHave is what enforce mode would have done with a version.
func wouldHave(v *verdict) string {
	if v.invalid {
		return "refused it: " + v.reason + ": " + firstFinding(v.findings)
	}
	return "held it: " + v.reason
}

func firstFinding(fs []Finding) string {
	if len(fs) == 0 {
		return ""
	}
	return fs[0].String()
}

// since is when the signer handed a version over: from its pending name,
// or the held version's own record.
func (z *zoneRun) since(c candidate) time.Time {
	if c.held && z.st.Held != nil {
		return z.st.Held.Since
	}
	var ns int64
	if _, err := fmt.Sscanf(c.name, "pending-%d-", &ns); err == nil {
		return time.Unix(0, ns).UTC()
	}
	return z.g.now()
}

func (z *zoneRun) recordVersion(ctx context.Context, action string, v *version, mode string) {
	rec := ledger.PublishRecord{Zone: z.zone, Action: action, Serial: v.Serial, SHA256: v.SHA256, Keys: v.Keys,
		Reason: v.Reason, Deadline: v.Deadline, Mode: mode}
	for _, f := range v.Findings {
		rec.Findings = append(rec.Findings, f.String())
	}
	z.g.record(ctx, rec)
}

// refuse keeps a version that fails validation aside (the newest only, for
// a bypass), never to be published by the gate.
func (z *zoneRun) refuse(ctx context.Context, c candidate, v *version, res *Result) string {
	res.Action = ledger.PublishRefused
	name := "refused-" + strings.TrimPrefix(strings.TrimPrefix(c.name, "pending-"), "held-")
	if err := z.rename(c.name, name); err != nil {
		name = ""
		z.drop(c.name)
	}
	if old := z.st.Refused; old != nil && old.File != name {
		z.drop(old.File)
	}
	if c.held {
		z.st.Held = nil
	}
	v.File = name
	z.st.Refused = v
	z.g.Log.Err(fmt.Sprintf("publish: zone %s serial %d: refused, never published: %s: %s", z.zone, v.Serial, v.Reason, firstFinding(v.Findings)))
	z.recordVersion(ctx, ledger.PublishRefused, v, z.site.Mode)
	return ledger.PublishRefused
}

// hold keeps a version back, in place of an older held one.
func (z *zoneRun) hold(ctx context.Context, c candidate, v *version, res *Result) string {
	res.Action = ledger.PublishHeld
	v.Deadline = deadlineOf(z.st)
	name := c.name
	if !c.held {
		name = "held-" + strings.TrimPrefix(c.name, "pending-")
		if err := z.rename(c.name, name); err != nil {
			z.g.Log.Err(fmt.Sprintf("publish: zone %s: keep held version: %v", z.zone, err))
			name = c.name
		}
		if old := z.st.Held; old != nil && old.File != name {
			z.drop(old.File)
			z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishSuperseded, Serial: old.Serial, SHA256: old.SHA256,
				Reason: fmt.Sprintf("serial %d is held in its place", v.Serial)})
		}
	}
	v.File = name
	changed := z.st.Held == nil || z.st.Held.SHA256 != v.SHA256 || z.st.Held.Reason != v.Reason
	z.st.Held = v
	when := "no version is served: none until a ceremony covers its keys"
	if v.Deadline != nil {
		when = "deadline " + v.Deadline.Format(time.RFC3339)
	}
	// Logged and recorded when it is new or its reason changed, not at
	// every release.
	if changed || !c.held {
		z.g.Log.Warning(fmt.Sprintf("publish: zone %s serial %d: held: %s; %s", z.zone, v.Serial, v.Reason, when))
		z.recordVersion(ctx, ledger.PublishHeld, v, z.site.Mode)
	}
	return ledger.PublishHeld
}

// supersede drops a version older than one published or held.
func (z *zoneRun) supersede(ctx context.Context, c candidate, res *Result) {
	z.drop(c.name)
	sha := ""
	if c.held && z.st.Held != nil {
		sha = z.st.Held.SHA256
		z.st.Held = nil
	}
	z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishSuperseded, Serial: res.Serial, SHA256: sha, Reason: res.Reason})
}

// failed handles a version that could not be reviewed: out of time, it
// waits; a file that cannot be read as a zone is refused.
func (z *zoneRun) failed(ctx context.Context, c candidate, file *os.File, res *Result, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
		res.Action = ledger.PublishTimeout
		res.Reason = fmt.Sprintf("the review did not finish within the run's bound (timeout %s): it waits for the next run or publish release", z.g.Config.Timeout)
		z.st.Failure = &failure{Kind: AlertTimeout, Serial: res.Serial, Since: z.g.now(), Reason: res.Reason}
		z.g.Log.Err(fmt.Sprintf("publish: zone %s serial %d: %s; the served version stays", z.zone, res.Serial, res.Reason))
		z.g.record(ctx, ledger.PublishRecord{Zone: z.zone, Action: ledger.PublishTimeout, Serial: res.Serial, Reason: res.Reason})
		return
	}
	v := &version{Serial: res.Serial, Since: z.since(c), Decided: z.g.now(), Invalid: true,
		Reason: "cannot be read as a zone: " + err.Error()}
	if z.site.Mode == Report || z.by != nil {
		// Report mode publishes what OpenDNSSEC alone would, but not a
		// file that is no zone: nothing would serve it.
		v.Reason += " (not published even in report mode or through a bypass: it is no zone)"
	}
	z.refuse(ctx, c, v, res)
}

// aged says whether a held version whose signatures came within the margin
// while it was held is still judged as held (published at its deadline
// with on_deadline "publish", held with "hold"): its deadline has come,
// none of its signatures has expired, and none expires before the served
// version's. It is no worse than what is served, which its deadline says
// must be replaced now; the signer's next version renews the signatures.
// The verdict is changed to say so.
func (z *zoneRun) aged(v *verdict) bool {
	dl, s := deadlineOf(z.st), z.st.Served
	if dl == nil || z.g.now().Before(*dl) || s == nil || v.rep.EarliestExpiration.Before(s.Review.EarliestExpiration) {
		return false
	}
	for _, f := range v.rep.Findings {
		if f.Code != zonereview.CodeExpiresSoon && f.Severity == zonereview.Error {
			return false
		}
	}
	v.invalid, v.aged = false, true
	note := fmt.Sprintf("its signatures expire within the margin, from %s on, no sooner than the served version's", v.rep.EarliestExpiration.Format(time.RFC3339))
	if v.reason = v.heldFor(); v.reason == "" {
		v.reason = note
	} else {
		v.reason += "; " + note
	}
	return true
}

// onlyTime says whether every error of the review is about time: a
// signature expired, expiring within the margin, or not valid yet.
func onlyTime(v *verdict) bool {
	if v.rep.Errors == 0 || v.rep.FindingsTotal > len(v.rep.Findings) {
		return false
	}
	for _, f := range v.rep.Findings {
		switch f.Code {
		case zonereview.CodeExpired, zonereview.CodeExpiresSoon, zonereview.CodeNotYetValid:
		default:
			if f.Severity == zonereview.Error {
				return false
			}
		}
	}
	return true
}
