package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

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
