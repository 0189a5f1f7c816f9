package main

import (
	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "inventory",
		Usage:     "list every key known to the enforcer or found on a token",
		UsageText: "ods-keyguard inventory [--repository R] [--json] [-t SECONDS]",
		Description: `Exit status: 0 listed; 3 the database or a token could not be read (the
list is printed all the same, with "unknown" where a token was unreadable).
The manual: man ods-keyguard.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repository", Aliases: []string{"r"}, Usage: "only keys of repository `R`"},
			jsonFlag(), timeoutFlag(defaultTimeout),
		},
		Action: withJob(runInventory),
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
	snap, err := r.snapshot(hsmcheck.Request{Labels: true})
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
