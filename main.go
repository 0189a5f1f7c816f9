// Command ods-keyguard makes sure that no DNSSEC signing key held by
// OpenDNSSEC 2.1 is used before it is safely backed up, and that a lost HSM
// never means a lost zone. It reads what is on each HSM through PKCS#11 and
// the enforcer's database read-only (recover prune-pool --apply alone
// writes it, with the enforcer stopped); ods-keyguard(8) (packaging/ods-keyguard.8)
// describes its commands, outputs and exit statuses.
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
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

func main() { os.Exit(Main()) }

// Main runs ods-keyguard with os.Args and returns the exit status.
func Main() int {
	return runWith(os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// runWith is the one place that turns an error into an exit status and
// prints it: one line per error (several when a command found several, joined).
func runWith(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	invoked := args
	args = dispatchHookName(args)
	out := &countingWriter{w: stdout}
	app := newApp(stdin, out, stderr)
	jsonName := jsonCommand(app, args) // before Run, which adds help commands
	app.Metadata = map[string]any{invokedKey: invoked, jsonKey: jsonName}
	err := app.Run(args)
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
	var lines []string
	for _, e := range errs {
		lines = append(lines, human.OneLine(e.Error()))
		fmt.Fprintf(stderr, "ods-keyguard: %s\n", human.OneLine(e.Error()))
	}
	// A --json command that failed before its document: the document of
	// the failure, so that a consumer always gets one.
	if out.n == 0 && jsonName != "" {
		writeJSON(stdout, failureDocument(jsonName, code, strings.Join(lines, "; ")))
	}
	return code
}

// dispatchHookName turns the enforcer's hook names into subcommands: the
// enforcer runs a hook without arguments, so the name is the only switch.
// The monitoring plugin link check_ods_keyguard runs check, and the
// signer's NotifyCommand ods-keyguard-publish ZONE FILE the publish gate.
func dispatchHookName(args []string) []string {
	switch filepath.Base(args[0]) {
	case "ods-keyguard-ds-submit":
		return append([]string{"ods-keyguard", "hook", "ds-submit"}, args[1:]...)
	case "ods-keyguard-ds-retract":
		return append([]string{"ods-keyguard", "hook", "ds-retract"}, args[1:]...)
	case "check_ods_keyguard":
		return append([]string{"ods-keyguard", "check"}, args[1:]...)
	case "ods-keyguard-publish":
		// The signer's NotifyCommand: ZONE FILE, then the fallback
		// command, if any, for when [publish] is not configured.
		out := []string{"ods-keyguard", "publish", "run"}
		if len(args) > 3 {
			return append(append(append(out, args[1:3]...), "--"), args[3:]...)
		}
		return append(out, args[1:]...)
	}
	return args
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	onUsage := func(c *cli.Context, err error, isSub bool) error { return exit(exitUsage, err) }
	app := &cli.App{
		Name:                 "ods-keyguard",
		Version:              version(),
		Usage:                "no DNSSEC key used before it is backed up, no zone lost with an HSM",
		UsageText:            "ods-keyguard [--config FILE] COMMAND [options] [--config FILE]",
		Description:          "Checks through PKCS#11 what is really on each HSM and on the backup, and\nreads the OpenDNSSEC 2.1 enforcer's database, read-only (recover prune-pool\n--apply alone writes it, with the enforcer stopped).\n\n" + exitCodesHelp + "\n\nThe manual: man ods-keyguard (commands, outputs, exit statuses), man\nkeyguard.toml (every configuration key), /usr/share/doc/ods-keyguard/.",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         onUsage,
		HideHelpCommand:      true,
		Suggest:              true,
		EnableBashCompletion: false, // packaging: completion.go, which never runs the program
		// A witness is "Smith, John" as given: repeated flags, never a
		// comma, make several values.
		DisableSliceFlagSeparator: true,
		Flags:                     []cli.Flag{configFlagDef()},
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
		addConfigFlag(cmd)
	}
	return app
}

// addConfigFlag gives every command that runs --config, so that it may
// come after the command's name as well as before it; the one given
// innermost wins (configFlag).
func addConfigFlag(cmd *cli.Command) {
	for _, sub := range cmd.Subcommands {
		addConfigFlag(sub)
	}
	if len(cmd.Subcommands) > 0 || cmd.Hidden {
		return
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == "config" {
				return
			}
		}
	}
	cmd.Flags = append(cmd.Flags, configFlagDef())
}

func configFlagDef() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default $ODS_KEYGUARD_CONFIG, else /etc/opendnssec/keyguard.toml)"}
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
		scanCommand(),
		backupCommand(),
		hookCommand(),
		parentCommand(),
		checkCommand(),
		publishCommand(),
		poolCommand(),
		recoverCommand(),
		ledgerCommand(),
		pinCommand(),
		completionCommand(),
		{
			Name:   hsmcheck.ChildCommand,
			Hidden: true,
			Action: func(c *cli.Context) error {
				return hsmcheck.ServeChild(c.App.Reader, c.App.Writer, hsmcheck.OpenModule)
			},
		},
		{
			Name:   hsmcheck.SignCommand,
			Hidden: true,
			Action: func(c *cli.Context) error { return hsmcheck.ServeSign(c.App.Reader, c.App.Writer) },
		},
	}
}
