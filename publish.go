package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/publish"
)

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:  "publish",
		Usage: "the publish gate: only a signed zone that validates, signed by backed-up keys, reaches the name servers",
		Description: `Installed as ods-keyguard-publish, the signer's NotifyCommand in conf.xml:

   <NotifyCommand>/usr/sbin/ods-keyguard-publish %zone %zonefile</NotifyCommand>

The manual: man ods-keyguard; the operator's guide: docs/publish.md.`,
		Subcommands: []*cli.Command{
			{
				Name:      "run",
				Usage:     "the gate for one version: what the signer runs (as ods-keyguard-publish ZONE FILE)",
				UsageText: "ods-keyguard publish run [--dry-run] ZONE FILE [-- COMMAND...]",
				Description: `The signer only logs the exit status.
Exit status: 0 published, or served already, or taken by another run;
1 held, refused, or not newer than the served version; 2 bad usage;
3 could not decide or install, or the reload failed.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "dry-run", Usage: "review and say what would be done; change nothing"},
				},
				Action: runPublish,
			},
			{
				Name:      "release",
				Usage:     "decide again what the gate holds: publish what may go now",
				UsageText: "ods-keyguard publish release [--zone Z] [--json] [-t SECONDS]",
				Description: `Exit status: 0 nothing left held or waiting; 1 some still held or waiting;
3 a zone could not be looked at.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"}, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runPublishRelease),
			},
			{
				Name:      "status",
				Usage:     "each zone through the gate: what is served, held, refused, failed",
				UsageText: "ods-keyguard publish status [--zone Z] [--json] [-t SECONDS]",
				Description: `Exit status: 0 nothing wrong; 1 something held, refused, failed, served
without a backup or bypassed; 3 the gate's state could not be read.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"}, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runPublishStatus),
			},
			{
				Name:      "history",
				Usage:     "every decision of the gate, oldest first",
				UsageText: "ods-keyguard publish history [--zone Z] [--json] [-t SECONDS]",
				Description: `Exit status: 0 listed; 3 the records could not be read.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "zone", Usage: "only zone `Z`"}, jsonFlag(), timeoutFlag(defaultTimeout)},
				Action: withJob(runPublishHistory),
			},
			{
				Name:      "review",
				Usage:     "review a signed zone file on its own, without OpenDNSSEC (Cascade's review hook)",
				UsageText: "ods-keyguard publish review FILE --origin Z [--ds FILE] [--margin DURATION] [--json] [-t SECONDS]",
				Description: `Exit status: 0 passes; 1 fails (the findings say why); 2 bad usage; 3 the
file could not be read as a zone.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "origin", Usage: "the zone's name `Z` (required)"},
					&cli.StringFlag{Name: "ds", Usage: "the parent's DS set: a `FILE` of DS or DNSKEY records"},
					&cli.StringFlag{Name: "margin", Value: "0s", Usage: "signatures must stay valid this `DURATION` longer (Go duration, such as 36h)"},
					jsonFlag(), timeoutFlag(defaultTimeout),
				},
				Action: runPublishReview,
			},
			{
				Name:      "bypass",
				Usage:     "turn the gate off for a zone in an emergency, recorded and CRITICAL in check",
				UsageText: "ods-keyguard publish bypass (--zone Z | --all) --reason TEXT [--until TIME] [--operator NAME] | --end [-t SECONDS]",
				Description: `Exit status: 0 done; 2 bad usage; 3 could not record or write it.
The manual: man ods-keyguard.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "zone", Usage: "the zone `Z`"},
					&cli.BoolFlag{Name: "all", Usage: "every zone"},
					&cli.StringFlag{Name: "reason", Usage: "why, for the record (required)"},
					&cli.StringFlag{Name: "until", Value: "P1D", Usage: "until `TIME`"},
					&cli.StringFlag{Name: "operator", Usage: "who (default $SUDO_USER, else $USER)"},
					&cli.BoolFlag{Name: "end", Usage: "end the bypass: the gate reviews again"},
					timeoutFlag(defaultTimeout),
				},
				Action: withJob(runPublishBypass),
			},
		},
	}
}

// publishGrace is how long past [publish] timeout a run may take to
// record and leave: the bound the signer's worker waits for at most.
const publishGrace = 5 * time.Second

// runPublish is the gate for one version, what the signer runs.
func runPublish(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 2 || (len(args) > 2 && args[2] != "--") {
		return usagef("publish run: want ZONE FILE [-- COMMAND...]")
	}
	zone, file, fallback := args[0], args[1], []string(nil)
	if len(args) > 3 {
		fallback = args[3:]
	}
	cfg, err := loadConfig(c)
	switch {
	case err != nil && c.Bool("dry-run"):
		return exit(exitUnknown, err)
	case err == nil && !cfg.PublishConfig().Configured() && c.Bool("dry-run"):
		return exit(exitUnknown, fmt.Errorf("publish run --dry-run: [publish] is not configured in %s", cfg.Path))
	case err != nil || !cfg.PublishConfig().Configured():
		return publishUnconfigured(c, zone, fallback, err)
	}
	pc := cfg.PublishConfig()
	log := hooks.NewSyslog(cfg.ODS.SyslogFacility, c.App.ErrWriter)
	defer log.Close()
	ctx, cancel := context.WithTimeout(c.Context, pc.Timeout)
	defer cancel()
	// The hard bound: whatever hangs (a file system, a lock), the signer's
	// worker gets its process back.
	watchdog := time.AfterFunc(pc.Timeout+publishGrace, func() {
		log.Err(fmt.Sprintf("publish: zone %s: gave up after %s: the served version stays", zone, pc.Timeout+publishGrace))
		os.Exit(exitUnknown)
	})
	defer watchdog.Stop()
	// The result is printed on stdout; the log goes to syslog (and to
	// stderr only when no logger takes it).
	g, closeGate, err := newGate(ctx, c, cfg, log.SyslogOnly(), "signer", c.Bool("dry-run"))
	if err != nil {
		log.Err(fmt.Sprintf("publish: zone %s: %v: the served version stays", zone, err))
		return exit(exitUnknown, nil)
	}
	defer closeGate()
	res, err := g.Run(ctx, zone, file, c.Bool("dry-run"))
	if res != nil && (c.Bool("dry-run") || err == nil) {
		publish.WriteResult(c.App.Writer, res, c.Bool("dry-run"))
	}
	if err != nil {
		return exit(exitUnknown, err)
	}
	if res.ReloadFailed {
		return exit(exitUnknown, nil)
	}
	return exit(publishStatus(res.Action), nil)
}

// publishStatus is the exit status of a run that did action.
func publishStatus(action string) int {
	switch action {
	case ledger.PublishPublished, ledger.PublishReported, ledger.PublishDeadline, publish.Served, publish.Taken, publish.Queued:
		return exitOK
	case ledger.PublishHeld, ledger.PublishRefused, ledger.PublishStale, ledger.PublishSuperseded:
		return exitProblems
	}
	return exitUnknown
}

// publishUnconfigured is the gate without [publish] (or without a
// configuration that loads): the fallback command runs, as the signer ran
// it before the gate, so that nothing changes until the gate is set up.
func publishUnconfigured(c *cli.Context, zone string, fallback []string, cfgErr error) error {
	log := hooks.NewSyslog("", c.App.ErrWriter)
	defer log.Close()
	why := "[publish] is not configured"
	if cfgErr != nil {
		why = human.OneLine(cfgErr.Error())
	}
	if len(fallback) == 0 {
		log.Err(fmt.Sprintf("publish: zone %s: %s, and no fallback command follows --: nothing published or reloaded", zone, why))
		return exit(exitUnknown, nil)
	}
	ctx, cancel := context.WithTimeout(c.Context, 60*time.Second)
	defer cancel()
	cmd := proc.Command(ctx, fallback[0], fallback[1:]...)
	cmd.Stdout, cmd.Stderr = c.App.ErrWriter, c.App.ErrWriter
	if err := proc.Run(ctx, cmd); err != nil {
		log.Err(fmt.Sprintf("publish: zone %s: %s; the fallback command %s failed: %v", zone, why, strings.Join(fallback, " "), err))
		return exit(exitUnknown, nil)
	}
	level := log.Warning
	if cfgErr != nil {
		level = log.Err
	}
	level(fmt.Sprintf("publish: zone %s: %s: ran the fallback command %s, unreviewed", zone, why, strings.Join(fallback, " ")))
	if cfgErr != nil {
		return exit(exitUnknown, nil)
	}
	return nil
}

func runPublishRelease(r *job) error {
	c := r.c
	if !r.cfg.PublishConfig().Configured() {
		return exit(exitUnknown, fmt.Errorf("publish release: [publish] is not configured in %s", r.cfg.Path))
	}
	log := hooks.NewSyslog(r.cfg.ODS.SyslogFacility, c.App.ErrWriter)
	r.closes = append(r.closes, func() error { log.Close(); return nil })
	g, closeGate, err := newGate(r.ctx, c, r.cfg, log.SyslogOnly(), "release", false)
	if err != nil {
		return err
	}
	r.closes = append(r.closes, closeGate)
	rep, err := g.Release(r.ctx, c.String("zone"))
	if err != nil {
		return err
	}
	if err := output(c, publish.ReleaseDoc(rep), func(w io.Writer) error { publish.WriteRelease(w, rep); return nil }); err != nil {
		return err
	}
	switch {
	case len(rep.Errors) > 0:
		return exit(exitUnknown, nil)
	case rep.Left > 0:
		return exit(exitProblems, nil)
	}
	return nil
}

func runPublishStatus(r *job) error {
	c := r.c
	zones, err := publish.Status(r.cfg.StateDir, c.String("zone"), r.cfg.PublishConfig().OnDeadline)
	if err != nil {
		return err
	}
	alerts, err := publish.Alerts(r.cfg.StateDir)
	if err != nil {
		return err
	}
	var bypasses []publish.Alert
	for _, a := range alerts {
		if a.Kind == publish.AlertBypass {
			bypasses = append(bypasses, a)
		}
	}
	now := time.Now()
	if err := output(c, publish.StatusDoc(zones, bypasses), func(w io.Writer) error {
		publish.WriteStatus(w, zones, now)
		for _, b := range bypasses {
			fmt.Fprintf(w, "CRITICAL %s\n", b.Text(now))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, z := range zones {
		if len(z.Alerts) > 0 {
			return exit(exitProblems, nil)
		}
	}
	if len(bypasses) > 0 {
		return exit(exitProblems, nil)
	}
	return nil
}

func runPublishHistory(r *job) error {
	l, err := r.ledger(true)
	if err != nil {
		return err
	}
	recs, err := l.Publishes(r.ctx, r.c.String("zone"))
	if err != nil {
		return err
	}
	return output(r.c, publish.HistoryDoc(recs), func(w io.Writer) error { publish.WriteHistory(w, recs); return nil })
}

func runPublishReview(c *cli.Context) error {
	// The flags may follow FILE, as a review hook's command line puts them.
	var rest []string
	asJSON := c.Bool("json")
	for _, a := range c.Args().Slice() {
		if a == "--json" || a == "-json" {
			asJSON = true
			continue
		}
		rest = append(rest, a)
	}
	c.Set("json", fmt.Sprint(asJSON))
	args, flags, err := interspersedArgs(c, rest, "origin", "ds", "margin")
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("publish review: want one FILE (\"-\": stdin)")
	}
	origin := flags["origin"]
	if origin == "" {
		return usagef("publish review: --origin Z is required: the zone's name")
	}
	margin, err := time.ParseDuration(flags["margin"])
	if err != nil || margin < 0 {
		return usagef("publish review: --margin %q: want a duration such as 36h", flags["margin"])
	}
	o := publish.ReviewOptions{Margin: margin}
	if path := flags["ds"]; path != "" {
		if o.DS, err = publish.ReadDS(path, origin); err != nil {
			return exit(exitUnknown, err)
		}
	}
	ctx, cancel, err := deadline(c)
	if err != nil {
		return err
	}
	defer cancel()
	start := time.Now()
	rep, err := publish.ReviewFile(ctx, args[0], c.App.Reader, origin, o)
	if err != nil {
		return exit(exitUnknown, err)
	}
	took := time.Since(start)
	if err := output(c, publish.ReviewDoc(rep), func(w io.Writer) error { publish.WriteReview(w, rep, took); return nil }); err != nil {
		return err
	}
	if !rep.Passed() {
		return exit(exitProblems, nil)
	}
	return nil
}

func runPublishBypass(r *job) error {
	c := r.c
	zone := c.String("zone")
	if c.Bool("all") == (zone != "") {
		return usagef("publish bypass: name one zone with --zone Z, or --all")
	}
	if c.Bool("all") {
		zone = publish.AllZones
	}
	if !c.Bool("end") && strings.TrimSpace(c.String("reason")) == "" {
		return usagef("publish bypass: --reason TEXT is required: the record says why")
	}
	until, err := human.ParseLater(c.String("until"), time.Now())
	if err != nil {
		return usagef("publish bypass: --until: %v", err)
	}
	log := hooks.NewSyslog(r.cfg.ODS.SyslogFacility, c.App.ErrWriter)
	r.closes = append(r.closes, func() error { log.Close(); return nil })
	g, closeGate, err := newGate(r.ctx, c, r.cfg, log.SyslogOnly(), ledger.Operator(c.String("operator")), false)
	if err != nil {
		return err
	}
	r.closes = append(r.closes, closeGate)
	if err := g.Bypass(r.ctx, zone, c.String("reason"), g.By, until, c.Bool("end")); err != nil {
		return err
	}
	if c.Bool("end") {
		fmt.Fprintf(c.App.Writer, "bypass of %s ended: the gate reviews every version again\n", zone)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "gate bypassed for %s until %s: recorded, CRITICAL in check\n", zone, until.UTC().Format(time.RFC3339))
	if zone == publish.AllZones {
		zone = ""
	}
	rep, err := g.Release(r.ctx, zone)
	if err != nil {
		return err
	}
	publish.WriteRelease(c.App.Writer, rep)
	return nil
}
