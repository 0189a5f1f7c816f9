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
		Description: `Problems: a key of the enforcer (not DELETE) missing from its repository's
token or from one of its mirrors; a key whose type or size differs from the
enforcer's record; a public key that differs between tokens; two private
keys under one CKA_ID. Private keys on a token that the enforcer does not
know are listed as orphans, for information.

Output: a summary line, then one line per problem ("PROBLEM kind token
locator: detail") and per orphan ("ORPHAN token id label").

Exit status: 0 clean; 1 problems found; 2 bad usage; 3 could not determine
(module missing, token absent or not answering, wrong PIN, database
unreadable).`,
		Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
		Action: withJob(runVerify),
	}
}

func runVerify(r *job) error {
	c := r.c
	snap, err := r.snapshot(hsmcheck.Request{})
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
