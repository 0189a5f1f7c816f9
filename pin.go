package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/pinlock"
)

func pinCommand() *cli.Command {
	return &cli.Command{
		Name:        "pin",
		Usage:       "the PINs a token refused, which ods-keyguard no longer tries",
		Description: `The manual: man ods-keyguard.`,
		Subcommands: []*cli.Command{
			{
				Name:      "refusals",
				Usage:     "list the refused PINs recorded in state_dir",
				UsageText: "ods-keyguard pin refusals",
				Description: `Exit status: 0 listed (none included); 3 state_dir unreadable.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{timeoutFlag(defaultTimeout)},
				Action: withJob(runPinRefusals),
			},
			{
				Name:      "clear",
				Usage:     "forget the refused PINs of a token, after the token or the PIN was fixed",
				UsageText: "ods-keyguard pin clear NAME | --all",
				Description: `Exit status: 0 cleared; 1 nothing recorded for NAME; 2 NAME is no token of
the configuration, and nothing is recorded under it; 3 state_dir not
writable.
The manual: man ods-keyguard.`,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "every token"}, timeoutFlag(defaultTimeout)},
				Action: runPinClear,
			},
		},
	}
}

func runPinRefusals(r *job) error {
	refusals, holds, err := r.cfg.PINRefusals().Refusals()
	if err != nil {
		return exit(exitUnknown, err)
	}
	if u := pinlock.UserStore(); u != nil {
		mine, h, err := u.Refusals()
		if err != nil {
			return exit(exitUnknown, err)
		}
		refusals, holds = append(refusals, mine...), append(holds, h...)
	}
	w := tabwriter.NewWriter(r.c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "pin refusals: %d recorded\n", len(refusals))
	if len(refusals) > 0 {
		fmt.Fprintln(w, "TOKEN\tLABEL\tREFUSED\tAT\tPIN SOURCE\tSTATE")
	}
	for i, x := range refusals {
		state := "holds"
		if !holds[i] {
			state = "source changed"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Token, x.Label, x.Error, x.At.UTC().Format(time.RFC3339), x.PINSource, state)
	}
	return w.Flush()
}

func runPinClear(c *cli.Context) error {
	name := c.Args().First()
	switch {
	case c.Bool("all") && c.NArg() > 0, !c.Bool("all") && c.NArg() != 1:
		return usagef("pin clear: give one token NAME, or --all")
	}
	r, err := start(c)
	if err != nil {
		return err
	}
	defer r.end()
	gone, err := r.cfg.PINRefusals().Clear(name)
	if err != nil {
		return exit(exitUnknown, err)
	}
	// A user that cannot write state_dir keeps its own record: clear that too.
	if u := pinlock.UserStore(); u != nil {
		mine, err := u.Clear(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return exit(exitUnknown, err)
		}
		gone = append(gone, mine...)
	}
	if len(gone) == 0 && name != "" {
		// A typo must not read as "nothing to clear".
		if err := r.cfg.KnownToken(name); err != nil {
			return usagef("pin clear: %v", err)
		}
	}
	if len(gone) == 0 {
		what := "any token"
		if name != "" {
			what = fmt.Sprintf("%q", name)
		}
		fmt.Fprintf(c.App.Writer, "pin clear: no refused PIN recorded for %s\n", what)
		return exit(exitProblems, nil)
	}
	for _, x := range gone {
		fmt.Fprintf(c.App.Writer, "pin clear: %s (token %q): the PIN refused with %s at %s will be tried again\n",
			x.Token, x.Label, x.Error, x.At.UTC().Format(time.RFC3339))
	}
	return nil
}
