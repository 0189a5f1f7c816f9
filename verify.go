package main

import (
	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "reconcile the enforcer's keys with every token",
		UsageText: "ods-keyguard verify [--json] [-t SECONDS]",
		Description: `Exit status: 0 clean; 1 problems found; 2 bad usage; 3 could not determine
(module missing, token absent or not answering, wrong PIN, database
unreadable).
The manual: man ods-keyguard.`,
		Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
		Action: withJob(runVerify),
	}
}

func runVerify(r *job) error {
	c := r.c
	// Labels: the keys the enforcer does not know are named by them.
	snap, err := r.snapshot(hsmcheck.Request{Labels: true})
	if err != nil {
		return err
	}
	rep := inventory.Build(snap.State, snap.Results, "")
	if err := output(c, rep.VerifyDoc(), rep.WriteVerify); err != nil {
		return err
	}
	if err := unreadable(snap.Results); err != nil || len(rep.Problems) == 0 {
		return err
	}
	return exit(exitProblems, nil)
}
