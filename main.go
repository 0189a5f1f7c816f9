// Command ods-keyguard makes sure that no DNSSEC signing key held by
// OpenDNSSEC 2.1 is used before it is safely backed up, and that a lost HSM
// never means a lost zone. It reads what is on each HSM through PKCS#11 and
// the enforcer's database read-only (recover prune-pool --apply alone
// writes it, with the enforcer stopped); `ods-keyguard --help` and the README
// describe its commands, outputs and exit statuses.
//
// Package main is the command layer: flags, configuration, one call into
// the package that owns each concept, printing, and exit statuses.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

func main() { os.Exit(Main()) }

// Main runs ods-keyguard with os.Args and returns the exit status.
func Main() int {
	return run(os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// run is the one place that turns an error into an exit status and prints
// it: one line per error (several when a command found several, joined).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	args = dispatchHookName(args)
	err := newApp(stdin, stdout, stderr).Run(args)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var st *status
	if errors.As(err, &st) && st.err == nil {
		return code
	}
	errs := []error{err}
	if j, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "ods-keyguard: %s\n", oneLine(e.Error()))
	}
	return code
}

// dispatchHookName turns the enforcer's hook names into subcommands: the
// enforcer runs a hook without arguments, so the name is the only switch.
// The monitoring plugin link check_ods_keyguard runs check.
func dispatchHookName(args []string) []string {
	switch filepath.Base(args[0]) {
	case "ods-keyguard-ds-submit":
		return append([]string{"ods-keyguard", "hook", "ds-submit"}, args[1:]...)
	case "ods-keyguard-ds-retract":
		return append([]string{"ods-keyguard", "hook", "ds-retract"}, args[1:]...)
	case "check_ods_keyguard":
		return append([]string{"ods-keyguard", "check"}, args[1:]...)
	}
	return args
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	onUsage := func(c *cli.Context, err error, isSub bool) error { return exit(exitUsage, err) }
	app := &cli.App{
		Name:                 "ods-keyguard",
		Version:              version(),
		Usage:                "no DNSSEC key used before it is backed up, no zone lost with an HSM",
		UsageText:            "ods-keyguard [--config FILE] COMMAND [options]",
		Description:          "Checks through PKCS#11 what is really on each HSM and on the backup, and\nreads the OpenDNSSEC 2.1 enforcer's database, read-only (recover prune-pool\n--apply alone writes it, with the enforcer stopped).\n\n" + exitCodesHelp,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         onUsage,
		HideHelpCommand:      true,
		Suggest:              true,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default $ODS_KEYGUARD_CONFIG, else /etc/opendnssec/keyguard.toml)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q (see ods-keyguard --help)", c.Args().First())
			}
			cli.ShowAppHelp(c)
			return usagef("no command given")
		},
		Commands: commands(),
	}
	for _, cmd := range app.Commands {
		setUsage(cmd, onUsage)
	}
	return app
}

func setUsage(cmd *cli.Command, f cli.OnUsageErrorFunc) {
	if cmd.OnUsageError == nil {
		cmd.OnUsageError = f
	}
	if cmd.Action == nil && len(cmd.Subcommands) > 0 {
		cmd.Action = func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("%s: unknown command %q", cmd.Name, c.Args().First())
			}
			return usagef("%s: which one? (see ods-keyguard %s --help)", cmd.Name, cmd.Name)
		}
	}
	for _, sub := range cmd.Subcommands {
		setUsage(sub, f)
	}
}

func commands() []*cli.Command {
	return []*cli.Command{
		inventoryCommand(),
		verifyCommand(),
		statusCommand(),
		backupCommand(),
		hookCommand(),
		checkCommand(),
		poolCommand(),
		recoverCommand(),
		ledgerCommand(),
		{
			Name:   hsmcheck.ChildCommand,
			Hidden: true,
			Action: func(c *cli.Context) error {
				return hsmcheck.ServeChild(c.App.Reader, c.App.Writer, hsmcheck.OpenModule)
			},
		},
		{
			// The man page, made from the commands themselves (make deb).
			Name:   "__manpage",
			Hidden: true,
			Action: func(c *cli.Context) error {
				man, err := c.App.ToMan()
				if err != nil {
					return err
				}
				_, err = io.WriteString(c.App.Writer, man)
				return err
			},
		},
	}
}
