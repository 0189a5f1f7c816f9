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
		Description: `Exit status: 0 reported (an unreachable token is part of the report); 3
configuration, state or database unreadable.
The manual: man ods-keyguard.`,
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
