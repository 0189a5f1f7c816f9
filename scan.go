package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
	"github.com/ods-keyguard/ods-keyguard/inventory"
)

func scanCommand() *cli.Command {
	return &cli.Command{
		Name:      "scan",
		Usage:     "read every token whole and record what it holds in state_dir, for check ([check] token_max_age)",
		UsageText: "ods-keyguard scan [-t SECONDS]",
		Description: `Reads the token of every repository and every mirror, every key with its
public key, and replaces state_dir/tokens.json with what it read (a token
that could not be read is recorded with its error). With [check]
token_max_age set, check judges the tokens from this record instead of
reading thousands of keys within a monitoring plugin's time limit: a
network HSM at a few milliseconds a call needs tens of seconds for 10,000
keys. Run it from a timer (ods-keyguard-scan.timer) as the user that reads
the tokens, more often than token_max_age.

Exit status: 0 every token read and recorded; 3 a token could not be read
(recorded as such), or the record could not be written.`,
		Flags:  []cli.Flag{timeoutFlag(scanTimeout)},
		Action: withJob(runScan),
	}
}

// scanTimeout is the time a scan has by default: 10,000 keys at 5 ms a
// call take about 100 s.
const scanTimeout = 600 * time.Second

func runScan(r *job) error {
	tokens, err := r.cfg.Tokens()
	if err != nil {
		return err
	}
	dir, err := statedir.Open(r.cfg.StateDir, true, r.cfg.StateGroup)
	if err != nil {
		return err
	}
	defer dir.Close()
	rec, err := inventory.Scan(r.ctx, source(r.cfg), tokens, dir, time.Now)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range rec.Tokens {
		if t.Error != "" {
			errs = append(errs, errors.New(t.Error))
			fmt.Fprintf(r.c.App.Writer, "%s: UNREADABLE, recorded as such\n", t.Token)
			continue
		}
		fmt.Fprintf(r.c.App.Writer, "%s: %s recorded\n", t.Token, human.Count(len(t.Contents.Keys), "key"))
	}
	if len(errs) > 0 {
		return exit(exitUnknown, errors.Join(errs...))
	}
	return nil
}
