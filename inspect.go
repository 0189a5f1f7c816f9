package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "inventory",
		Usage:     "list every key known to the enforcer or found on a token",
		UsageText: "ods-keyguard inventory [--repository R] [--json] [-t SECONDS]",
		Description: `One row per key: locator, repository, policy, role, zones, use (pool,
assigned, in use, retiring, deleted, or orphan for a key on a token that the
enforcer does not know), the enforcer's backup state, the confirmed
ceremony that covers it, and present/missing on each token of the
repository (its own and every mirror).

Exit status: 0 listed; 3 the database or a token could not be read (the
list is printed all the same, with "unknown" where a token was unreadable).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only keys of repository `R`"},
			jsonFlag(), timeoutFlag(defaultTimeout),
		},
		Action: withJob(runInventory),
	}
}

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

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "summarise each repository: backup states, rule 1 breaches, tokens",
		UsageText: "ods-keyguard status [--json] [-t SECONDS]",
		Description: `Per repository: whether the enforcer requires backups there, each token
(reachable, serial, key count), the keys by the enforcer's backup state and
those covered by ods-keyguard only (Not Required in the enforcer, in a
confirmed ceremony), the last confirmed backup ceremony and the open one,
and the keys in use without a confirmed backup: a record rumoured or
omnipresent while the key is in no confirmed ceremony or, with
RequireBackup, Required or Prepared in the enforcer. OpenDNSSEC 2.1
publishes and signs with such keys; rule 1 of the backup procedure forbids
it.

Exit status: 0 reported (an unreachable token is part of the report); 3
configuration, state or database unreadable.`,
		Flags:  []cli.Flag{jsonFlag(), timeoutFlag(defaultTimeout)},
		Action: withJob(runStatus),
	}
}

func runInventory(r *job) error {
	c := r.c
	repo := c.String("repository")
	if repo != "" {
		if _, err := r.cfg.RepositoryNames(repo); err != nil {
			return err
		}
	}
	snap, err := r.snapshot(hsmcheck.Request{})
	if err != nil {
		return err
	}
	_, store, err := r.ceremonies(true)
	if err != nil {
		return err
	}
	rep := inventory.Build(snap.State, snap.Results, repo)
	rep.Cover(store.Coverage(), r.cfg.RequireBackup())
	if err := output(c, rep.InventoryDoc(), rep.WriteInventory); err != nil {
		return err
	}
	return unreadable(snap.Results)
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

func runStatus(r *job) error {
	c := r.c
	snap, err := r.snapshot(hsmcheck.Request{NoPublic: true})
	if err != nil {
		return err
	}
	_, store, err := r.ceremonies(true)
	if err != nil {
		return err
	}
	var repos []inventory.RepositoryConf
	for _, repo := range r.cfg.ODS.Repositories {
		repos = append(repos, inventory.RepositoryConf{Name: repo.Name, RequireBackup: repo.RequireBackup})
	}
	st := inventory.Status(snap.State, snap.Results, store, repos)
	return output(c, inventory.StatusDoc(st), func(w io.Writer) error { return inventory.WriteStatus(w, st) })
}
