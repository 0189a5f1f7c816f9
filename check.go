package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/internal/atomicfile"
	"github.com/ods-keyguard/ods-keyguard/internal/when"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/monitor"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "monitoring plugin (Nagios, Icinga, Naemon, Sensu) for both rules of the backup procedure",
		UsageText: "ods-keyguard check [-w RANGE] [-c RANGE] [-t SECONDS] [--at TIME] [--json] [--prometheus FILE] [-V] [-h]",
		Description: `Rule 1, CRITICAL: a key in use (a DS, DNSKEY, RRSIG or RRSIGDNSKEY record
rumoured or omnipresent) whose backup is not confirmed: in no confirmed
ceremony, or, with RequireBackup, Required or Prepared in the enforcer.
Rule 2: per pool (policy, role, algorithm, bits, repository) the backed-up
keys at the head of the pool, in the order the enforcer hands them out,
against the keys its zones take until the next backup is due plus grace.
Spare = covered - needed, judged by --warning-spare and --critical-spare.
A pool key on no HSM is never a spare, and ends the head like a key not
backed up; CRITICAL "pool" names the remedy: restore it from the backup
token, or, made after the last ceremony, ods-keyguard recover prune-pool.
Presence, CRITICAL: an enforcer key missing from its token or a mirror, or
of another type there (public keys are compared by verify, not here: check
skips the public-key objects to stay quick).
Backup age: WARNING past [backup] interval, CRITICAL past interval + grace;
WARNING when no ceremony was ever confirmed, when a ceremony has been open
for longer than grace or was interrupted, and when the enforcer holds keys
Prepared with no ceremony open.
DS guard: WARNING for each submission withheld and retraction held, and for
a DS the enforcer has at the parent that ods-keyguard has no record of
forwarding. With [parent] configured: CRITICAL when no DS at the parent
matches a published, backed-up KSK; WARNING for a DS of a key that is not
backed up or that the enforcer retracted.
UNKNOWN when it cannot tell: module missing, wrong PIN, token absent,
database unreadable, bad arguments, out of time.

Output: "KEYGUARD STATE - summary | perfdata" (at most about 200 bytes), then
one line per problem, one per pool, and "| " with the rest of the perfdata;
at most 8,000 bytes in all (what Nagios keeps): findings that do not fit
are counted per state and category, --json has them all.
Ranges: [@][start:][end], alert outside (inside with @).
--at TIME: RFC 3339, YYYY-MM-DD[THH:MM], or an ISO 8601 duration from now (P3D).

Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "warning-spare", Aliases: []string{"w"}, Value: "1:", Usage: "WARNING when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.StringFlag{Name: "critical-spare", Aliases: []string{"c"}, Value: "0:", Usage: "CRITICAL when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.Float64Flag{Name: "timeout", Aliases: []string{"t"}, Value: 10, Usage: "answer UNKNOWN before `SECONDS` have passed"},
			&cli.StringFlag{Name: "at", Usage: "evaluate as of `TIME` (\"at Friday's backup, is there enough?\")"},
			&cli.BoolFlag{Name: "json", Usage: "print the verdict as a JSON document instead"},
			&cli.StringFlag{Name: "prometheus", Usage: "also write the figures to `FILE` (node_exporter textfile format, atomically)"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"},
			// Also here, for the plugin link check_ods_keyguard, whose
			// arguments all come after "check".
			&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default $ODS_KEYGUARD_CONFIG, else /etc/opendnssec/keyguard.toml)"},
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			// A scheduler shows only stdout: the plugin line carries the reason.
			fmt.Fprintf(c.App.Writer, "KEYGUARD UNKNOWN - %s\n", oneLine(err.Error()))
			return exit(exitUnknown, err)
		},
		Action: runCheck,
	}
}

func runCheck(c *cli.Context) error {
	if c.Bool("version") {
		fmt.Fprintf(c.App.Writer, "check_ods_keyguard (ods-keyguard) %s\n", version())
		return nil
	}
	rep := checkReport(c)
	if c.Bool("json") {
		if err := rep.JSON(c.App.Writer); err != nil {
			return err
		}
	} else {
		rep.Text(c.App.Writer)
	}
	code := int(rep.State) // the verdict's status, even when the file fails
	if path := c.String("prometheus"); path != "" {
		if err := atomicfile.Write(path, []byte(rep.Prometheus()), 0o644); err != nil {
			return exit(code, fmt.Errorf("--prometheus: %w", err))
		}
	}
	return exit(code, nil)
}

// checkReport parses check's options and runs it; bad options are an
// UNKNOWN verdict like any other, on stdout where a scheduler looks.
func checkReport(c *cli.Context) *monitor.Report {
	now := time.Now().UTC()
	opt := monitor.CheckOptions{At: now}
	if c.Args().Present() {
		return monitor.Unknown(opt, fmt.Sprintf("check: unexpected argument %q", c.Args().First()))
	}
	timeout := time.Duration(c.Float64("timeout") * float64(time.Second))
	if timeout <= 0 {
		return monitor.Unknown(opt, fmt.Sprintf("check: --timeout %v: must be more than zero", c.Float64("timeout")))
	}
	var err error
	if opt.Warn, err = monitor.ParseRange(c.String("warning-spare")); err != nil {
		return monitor.Unknown(opt, "--warning-spare: "+err.Error())
	}
	if opt.Crit, err = monitor.ParseRange(c.String("critical-spare")); err != nil {
		return monitor.Unknown(opt, "--critical-spare: "+err.Error())
	}
	if s := c.String("at"); s != "" {
		if opt.At, err = when.ParseAt(s, now); err != nil {
			return monitor.Unknown(opt, "--at: "+err.Error())
		}
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return monitor.Unknown(opt, err.Error())
	}
	sched, err := cfg.Schedule()
	if err != nil {
		return monitor.Unknown(opt, err.Error())
	}
	opt.Interval, opt.Grace, opt.NewZones = sched.Interval, sched.Grace, cfg.Check.NewZones
	tokens, err := cfg.Tokens()
	if err != nil {
		return monitor.Unknown(opt, err.Error())
	}
	lo, err := cfg.LedgerOptions(c.App.ErrWriter, true)
	if err != nil {
		return monitor.Unknown(opt, err.Error())
	}
	return monitor.Run(c.Context, timeout, monitor.Sources{Datastore: cfg.ODS.Datastore, Tokens: tokens,
		OpenLedger:    func(ctx context.Context) (*ledger.Ledger, error) { return ledger.New(ctx, lo) },
		Ledger:        lo.String(),
		RequireBackup: cfg.RequireBackup(), Parent: cfg.ParentConfig()}, opt)
}
