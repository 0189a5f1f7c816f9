package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/check"
	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/atomicfile"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/inventory"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "monitoring plugin (Nagios, Icinga, Naemon, Sensu) for both rules of the backup procedure",
		UsageText: "ods-keyguard check [-w RANGE] [-c RANGE] [-t SECONDS] [--at TIME] [--json] [--prometheus FILE] [--sudo] [--config FILE] [-V] [-h]",
		Description: `Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
The manual: man ods-keyguard.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "warning-spare", Aliases: []string{"w"}, Value: "1:", Usage: "WARNING when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.StringFlag{Name: "critical-spare", Aliases: []string{"c"}, Value: "0:", Usage: "CRITICAL when a pool's spare backed-up keys are outside `RANGE`"},
			&cli.Float64Flag{Name: "timeout", Aliases: []string{"t"}, Value: 10, Usage: "answer UNKNOWN before `SECONDS` have passed"},
			&cli.StringFlag{Name: "at", Usage: "evaluate as of `TIME`, now or later (\"at Friday's backup, is there enough?\")"},
			&cli.BoolFlag{Name: "json", Usage: "print the verdict as a JSON document instead"},
			&cli.StringFlag{Name: "prometheus", Usage: "also write the figures to `FILE` (node_exporter textfile format, atomically)"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"},
			&cli.BoolFlag{Name: "sudo", Usage: "run this check again through sudo -n, without --sudo, as the sudoers rule allows: a failure of sudo itself (no rule, a password asked) is UNKNOWN, never a WARNING"},
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			// A scheduler shows only stdout: the plugin line (or with
			// --json the document) carries the reason.
			if c.App.Metadata[jsonKey] == "check" {
				check.Unknown(check.CheckOptions{At: time.Now().UTC()}, err.Error()).JSON(c.App.Writer)
			} else {
				fmt.Fprintf(c.App.Writer, "KEYGUARD UNKNOWN - %s\n", human.OneLine(err.Error()))
			}
			// Said on stdout, as every other UNKNOWN: not again on stderr,
			// which Icinga 2 appends to the plugin's output.
			return exit(exitUnknown, nil)
		},
		Action: runCheck,
	}
}

func runCheck(c *cli.Context) error {
	if c.Bool("version") {
		fmt.Fprintf(c.App.Writer, "check_ods_keyguard (ods-keyguard) %s\n", version())
		return nil
	}
	if c.Bool("sudo") {
		return runSudo(c)
	}
	rep := checkReport(c)
	if err := render(c, rep); err != nil {
		return err
	}
	code := int(rep.State) // the verdict's status, even when the file fails
	if path := c.String("prometheus"); path != "" {
		if err := atomicfile.Write(path, []byte(rep.Prometheus()), 0o644); err != nil {
			return exit(code, fmt.Errorf("--prometheus: %w", err))
		}
	}
	return exit(code, nil)
}

// render prints the verdict as the plugin's lines, or with --json as a
// document.
func render(c *cli.Context, rep *check.Report) error {
	if c.Bool("json") {
		return rep.JSON(c.App.Writer)
	}
	rep.Text(c.App.Writer)
	return nil
}

// sudoPath is where Debian's sudo is; PATH is looked up when it is not there.
const sudoPath = "/usr/bin/sudo"

// runSudo runs the check as it was invoked, without --sudo, through
// sudo -n. sudo exits 1 when it cannot run the command (no rule, a password
// required, the user unknown), which a scheduler would show as WARNING: what
// does not come back as the plugin's own output is UNKNOWN, naming what
// sudo said.
func runSudo(c *cli.Context) error {
	invoked, _ := c.App.Metadata[invokedKey].([]string)
	prog, args, err := sudoCommandLine(invoked)
	unknown := func(msg string) error {
		rep := check.Unknown(check.CheckOptions{At: time.Now().UTC()}, msg)
		if err := render(c, rep); err != nil {
			return err
		}
		return exit(exitUnknown, nil)
	}
	if err != nil {
		return unknown("--sudo: " + err.Error())
	}
	sudo := sudoPath
	if _, err := os.Stat(sudo); err != nil {
		if sudo, err = exec.LookPath("sudo"); err != nil {
			return unknown("--sudo: sudo is not installed")
		}
	}
	// The inner check answers within its own -t; sudo gets a little more.
	t := time.Duration(c.Float64("timeout")*float64(time.Second)) + 5*time.Second
	ctx, cancel := context.WithTimeout(c.Context, t)
	defer cancel()
	cmd := proc.Command(ctx, sudo, append([]string{"-n", "--", prog}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = proc.Run(ctx, cmd)
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return unknown(fmt.Sprintf("sudo -n %s: no answer within %s", prog, t))
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return unknown(fmt.Sprintf("sudo -n %s: %v", prog, err))
	}
	out := stdout.Bytes()
	plugin := bytes.HasPrefix(out, []byte("KEYGUARD "))
	if c.Bool("json") {
		plugin = bytes.HasPrefix(out, []byte("{\n  \"schema\": \"ods-keyguard/check/1\""))
	}
	if !plugin || code < 0 || code > 3 {
		why := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(why, '\n'); i >= 0 {
			why = why[:i]
		}
		if why == "" {
			why = fmt.Sprintf("exit status %d without the plugin's output", code)
		}
		return unknown(fmt.Sprintf("sudo -n %s: %s", prog, why))
	}
	c.App.Writer.Write(out)
	return exit(code, nil)
}

// sudoCommandLine is the command line check was invoked with, without
// --sudo, its program by an absolute path (the one a sudoers rule names).
func sudoCommandLine(invoked []string) (string, []string, error) {
	if len(invoked) == 0 {
		return "", nil, errors.New("no command line")
	}
	prog := invoked[0]
	var err error
	switch {
	case filepath.IsAbs(prog):
	case strings.Contains(prog, "/"):
		prog, err = filepath.Abs(prog)
	default:
		prog, err = exec.LookPath(prog)
		if err == nil {
			prog, err = filepath.Abs(prog)
		}
	}
	if err != nil {
		return "", nil, err
	}
	var args []string
	for _, a := range invoked[1:] {
		switch a {
		case "--sudo", "-sudo", "--sudo=true", "-sudo=true":
			continue
		}
		args = append(args, a)
	}
	return prog, args, nil
}

// checkReport parses check's options and runs it; bad options are an
// UNKNOWN verdict like any other, on stdout where a scheduler looks.
func checkReport(c *cli.Context) *check.Report {
	now := time.Now().UTC()
	opt := check.CheckOptions{At: now}
	if c.Args().Present() {
		return check.Unknown(opt, fmt.Sprintf("check: unexpected argument %q", c.Args().First()))
	}
	timeout := time.Duration(c.Float64("timeout") * float64(time.Second))
	if timeout <= 0 {
		return check.Unknown(opt, fmt.Sprintf("check: --timeout %v: must be more than zero", c.Float64("timeout")))
	}
	var err error
	if opt.Warn, err = check.ParseRange(c.String("warning-spare")); err != nil {
		return check.Unknown(opt, "--warning-spare: "+err.Error())
	}
	if opt.Crit, err = check.ParseRange(c.String("critical-spare")); err != nil {
		return check.Unknown(opt, "--critical-spare: "+err.Error())
	}
	if s := c.String("at"); s != "" {
		if opt.At, err = human.ParseLater(s, now); err != nil {
			return check.Unknown(opt, "--at: "+err.Error())
		}
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return check.Unknown(opt, err.Error())
	}
	sched, err := cfg.Schedule()
	if err != nil {
		return check.Unknown(opt, err.Error())
	}
	opt.Interval, opt.Grace, opt.NewZones = sched.Interval, sched.Grace, cfg.Check.NewZones
	lo, err := cfg.LedgerOptions(c.App.ErrWriter, true)
	if err != nil {
		return check.Unknown(opt, err.Error())
	}
	cfg.RefusalJournal = journalTo(lo)
	tokens, err := cfg.Tokens()
	if err != nil {
		return check.Unknown(opt, err.Error())
	}
	src, closeSrc, err := checkSource(cfg)
	if err != nil {
		return check.Unknown(opt, err.Error())
	}
	defer closeSrc()
	opt.TokenMaxAge = cfg.Check.TokenAge
	return check.Run(c.Context, timeout, check.Sources{Source: src, Tokens: tokens,
		OpenLedger:    func(ctx context.Context) (*ledger.Ledger, error) { return ledger.New(ctx, lo) },
		Ledger:        lo.String(),
		RequireBackup: cfg.RequireBackup(), Parent: cfg.ParentConfig(), Served: cfg.ServedConfig(), PublishState: publishState(cfg)}, opt)
}

// publishState is where check reads the publish gate's alerts: state_dir,
// when [publish] is configured.
func publishState(cfg *config.Config) string {
	if !cfg.PublishConfig().Configured() {
		return ""
	}
	return cfg.StateDir
}

// checkSource is where check reads the tokens: the record of ods-keyguard
// scan with [check] token_max_age, else the tokens themselves.
func checkSource(cfg *config.Config) (inventory.Source, func() error, error) {
	if cfg.Check.TokenAge == 0 {
		return source(cfg), func() error { return nil }, nil
	}
	dir, err := statedir.Open(cfg.StateDir, false, -1)
	if err != nil {
		return nil, nil, err
	}
	return inventory.Recorded{Live: source(cfg), Dir: dir, MaxAge: cfg.Check.TokenAge, Now: time.Now()}, dir.Close, nil
}
