package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/hooks"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

const (
	kindSubmit  = "ds-submit"
	kindRetract = "ds-retract"
)

func hookCommand() *cli.Command {
	return &cli.Command{
		Name:  "hook",
		Usage: "the enforcer's DS hooks: forward only keys whose backup is verified",
		Description: `Installed as ods-keyguard-ds-submit and ods-keyguard-ds-retract (links to
this binary) and named in conf.xml:

   <DelegationSignerSubmitCommand>/usr/local/bin/ods-keyguard-ds-submit</DelegationSignerSubmitCommand>
   <DelegationSignerRetractCommand>/usr/local/bin/ods-keyguard-ds-retract</DelegationSignerRetractCommand>

The enforcer passes no arguments: the configuration comes from
$ODS_KEYGUARD_CONFIG or /etc/opendnssec/keyguard.toml. A DNSKEY is forwarded
to [hooks] ds_submit_forward only when its key is in a confirmed backup
ceremony, is on its repository's token and every mirror now, and (with
RequireBackup) is Done in the enforcer. Anything else is withheld: recorded
in state_dir, logged to syslog (daemon, tag ods-keyguard) and stderr.
Retractions are always forwarded. The enforcer ignores a hook's exit
status and never retries: "hook release" sends what is covered later.`,
		Subcommands: []*cli.Command{
			{
				Name:      "ds-submit",
				Usage:     "read DNSKEYs on stdin, forward those whose backup is verified",
				UsageText: "ods-keyguard hook ds-submit < DNSKEY-lines",
				Description: `Exit status: 0 forwarded (or approved, with no forward command
configured); 1 withheld; the forward command's status when it failed.`,
				Flags:  []cli.Flag{ckaIDFlag()},
				Action: func(c *cli.Context) error { return runHook(c, kindSubmit) },
			},
			{
				Name:        "ds-retract",
				Usage:       "read DNSKEYs on stdin and forward them: a retraction never endangers a zone",
				UsageText:   "ods-keyguard hook ds-retract < DNSKEY-lines",
				Description: `Exit status: 0 forwarded; the forward command's status when it failed.`,
				Flags:       []cli.Flag{ckaIDFlag()},
				Action:      func(c *cli.Context) error { return runHook(c, kindRetract) },
			},
			{
				Name:      "pending",
				Usage:     "list withheld submissions",
				UsageText: "ods-keyguard hook pending [--json]",
				Description: `Text: one line per entry: ID KIND ZONE KEYTAG RECEIVED REASON.
Exit status: 0 listed (even when empty).`,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON document"}},
				Action: func(c *cli.Context) error {
					cfg, err := commandConfig(c)
					if err != nil {
						return err
					}
					list, err := ledger.LoadPending(cfg.StateDir)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if list == nil {
							list = []ledger.Pending{}
						}
						return writeJSON(c.App.Writer, struct {
							Pending []ledger.Pending `json:"pending"`
						}{list})
					}
					return printPending(c.App.Writer, list)
				},
			},
			{
				Name:      "release",
				Usage:     "forward withheld submissions whose keys are now covered",
				UsageText: "ods-keyguard hook release",
				Description: `Decides every withheld submission again and forwards those now covered; an
entry leaves the list only when its forward succeeded. backup done runs it.
Exit status: 0 nothing left withheld; 1 some still withheld.`,
				Action: func(c *cli.Context) error {
					cfg, err := commandConfig(c)
					if err != nil {
						return err
					}
					left, err := releasePending(c.Context, cfg, c.App.Writer, newLogger(c.App.ErrWriter))
					if err != nil {
						return err
					}
					if left > 0 {
						return withCode(exitProblems, nil)
					}
					return nil
				},
			},
		},
	}
}

// ckaIDFlag accepts the enforcer's " --cka_id" suffix, should it ever be
// passed on: the cka_id comes on stdin either way.
func ckaIDFlag() cli.Flag {
	return &cli.BoolFlag{Name: "cka_id", Hidden: true, Usage: "ignored: the enforcer's cka_id comes on stdin"}
}

// logger writes one line per event to syslog (daemon facility, tag
// ods-keyguard) and to stderr.
type logger struct {
	sys    *syslog.Writer
	stderr io.Writer
}

// newLogger dials the system logger, or $ODS_KEYGUARD_SYSLOG (a unix
// datagram socket). Without a logger the lines still reach stderr.
func newLogger(stderr io.Writer) *logger {
	l := &logger{stderr: stderr}
	prio := syslog.LOG_DAEMON | syslog.LOG_WARNING
	var err error
	if sock := os.Getenv("ODS_KEYGUARD_SYSLOG"); sock != "" {
		l.sys, err = syslog.Dial("unixgram", sock, prio, "ods-keyguard")
	} else {
		l.sys, err = syslog.New(prio, "ods-keyguard")
	}
	if err != nil {
		l.sys = nil
	}
	return l
}

func (l *logger) log(format string, args ...any) {
	line := oneLine(fmt.Sprintf(format, args...))
	if l.sys != nil {
		l.sys.Warning(line)
	}
	fmt.Fprintf(l.stderr, "ods-keyguard: %s\n", line)
}

func (l *logger) close() {
	if l.sys != nil {
		l.sys.Close()
	}
}

func runHook(c *cli.Context, kind string) error {
	if err := noArgs(c); err != nil {
		return err
	}
	lg := newLogger(c.App.ErrWriter)
	defer lg.close()
	cfg, err := loadConfig(c)
	if err != nil {
		lg.log("%s: withheld everything: %v", kind, err)
		return withCode(exitProblems, nil)
	}
	subs, err := hooks.Parse(c.App.Reader)
	if err != nil {
		lg.log("%s: withheld: %v", kind, err)
		return withCode(exitProblems, nil)
	}
	if len(subs) == 0 {
		lg.log("%s: no DNSKEY on stdin: nothing to do", kind)
		return withCode(exitProblems, nil)
	}
	forward := cfg.Hooks.DSSubmitForward
	if kind == kindRetract {
		forward = cfg.Hooks.DSRetractForward
	}
	var pass, held []hooks.Submission
	var reasons []hooks.Decision
	if kind == kindRetract {
		pass = subs
	} else {
		facts := gatherFacts(c.Context, cfg, subs)
		for _, s := range subs {
			d := hooks.Decide(s, facts)
			if d.Forward {
				pass = append(pass, s)
				lg.log("%s: %s (key %s, ceremony %s): backup verified, forwarding", kind, s.Describe(), d.Locator, d.Ceremony)
			} else {
				held = append(held, s)
				reasons = append(reasons, d)
			}
		}
	}
	var fwdErr error
	if len(pass) > 0 {
		if forward == "" {
			for _, s := range pass {
				lg.log("%s: %s: approved, but no forward command is configured ([hooks] ds_%s_forward)", kind, s.Describe(), strings.TrimPrefix(kind, "ds-"))
			}
		} else if fwdErr = runForward(c.Context, forward, pass, c.App.Writer, c.App.ErrWriter); fwdErr != nil {
			for _, s := range pass {
				held = append(held, s)
				reasons = append(reasons, hooks.Decision{Reason: "forward command failed: " + fwdErr.Error()})
			}
		} else if kind == kindRetract {
			for _, s := range pass {
				lg.log("%s: %s: forwarded", kind, s.Describe())
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	now := time.Now().UTC()
	var recs []ledger.Pending
	for i, s := range held {
		lg.log("%s: withheld %s: %s", kind, s.Describe(), reasons[i].Reason)
		recs = append(recs, ledger.Pending{
			ID: ledger.PendingID(kind, s.Line), Kind: kind, Zone: s.Zone, KeyTag: s.KeyTag, Locator: reasons[i].Locator,
			Line: s.Line, Received: now, Updated: now, Reason: reasons[i].Reason,
		})
	}
	if err := recordPending(cfg, recs); err != nil {
		lg.log("%s: could not record what was withheld: %v", kind, err)
	}
	var ee *exec.ExitError
	if errors.As(fwdErr, &ee) && ee.ExitCode() > 0 {
		return withCode(ee.ExitCode(), nil)
	}
	return withCode(exitProblems, nil)
}

// gatherFacts reads what a decision needs, once: the database, the
// ceremonies, and on each token only the candidate keys.
func gatherFacts(ctx context.Context, cfg *config.Config, subs []hooks.Submission) hooks.Facts {
	f := hooks.Facts{RequireBackup: map[string]bool{}, Tokens: map[string][]hooks.TokenView{}}
	for _, r := range cfg.ODS.Repositories {
		f.RequireBackup[r.Name] = r.RequireBackup
	}
	st, err := readState(ctx, cfg)
	if err != nil {
		f.StateErr = err
		return f
	}
	f.State = st
	store, err := ledger.Load(cfg.StateDir)
	if err != nil {
		f.State, f.StateErr = nil, err
		return f
	}
	f.Coverage = store.Coverage()
	ids := map[string]bool{}
	repos := map[string]bool{}
	for _, s := range subs {
		for _, k := range hooks.Candidates(s, st) {
			ids[k.Locator] = true
			repos[k.Repository] = true
		}
	}
	if len(ids) == 0 {
		return f
	}
	all, err := cfg.Tokens()
	var tokens []hsmcheck.Token
	for r := range repos {
		tokens = append(tokens, config.RepositoryTokens(all, r)...)
	}
	if err != nil {
		for r := range repos {
			f.Tokens[r] = []hooks.TokenView{{Name: "tokens", Err: err}}
		}
		return f
	}
	var idList []string
	for id := range ids {
		idList = append(idList, id)
	}
	for _, res := range (hsmcheck.Reader{}).Read(ctx, tokens, hsmcheck.Request{IDs: idList}) {
		v := hooks.TokenView{Name: res.Token.Describe(), Err: res.Err}
		if inv := res.Contents; inv != nil {
			v.Lookup = func(locator string) (string, bool) {
				k, n := inv.Find(locator)
				return k.Fingerprint, n > 0
			}
		}
		f.Tokens[res.Token.Repository] = append(f.Tokens[res.Token.Repository], v)
	}
	return f
}

// runForward runs the forward command with the lines on its stdin, as
// received, in this process's environment.
func runForward(ctx context.Context, command string, subs []hooks.Submission, stdout, stderr io.Writer) error {
	var in bytes.Buffer
	for _, s := range subs {
		in.WriteString(s.Line)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &in, stdout, stderr
	return cmd.Run()
}

func stateLock(cfg *config.Config) (*ledger.Lock, error) {
	return ledger.Acquire(cfg.StateDir, cfg.LockWait)
}

func recordPending(cfg *config.Config, recs []ledger.Pending) error {
	lock, err := stateLock(cfg)
	if err != nil {
		return err
	}
	defer lock.Release()
	list, err := ledger.LoadPending(cfg.StateDir)
	if err != nil {
		return err
	}
	for _, r := range recs {
		list = ledger.AddPending(list, r)
	}
	return ledger.SavePending(cfg.StateDir, list)
}

// releasePending forwards what is now covered and returns how many entries
// are left.
func releasePending(ctx context.Context, cfg *config.Config, out io.Writer, lg *logger) (int, error) {
	lock, err := stateLock(cfg)
	if err != nil {
		return 0, err
	}
	defer lock.Release()
	list, err := ledger.LoadPending(cfg.StateDir)
	if err != nil || len(list) == 0 {
		return 0, err
	}
	var subs []hooks.Submission
	for _, p := range list {
		if p.Kind == kindSubmit {
			subs = append(subs, hooks.ParseLine(p.Line))
		}
	}
	facts := gatherFacts(ctx, cfg, subs)
	var left []ledger.Pending
	now := time.Now().UTC()
	for _, p := range list {
		s := hooks.ParseLine(p.Line)
		forward := cfg.Hooks.DSRetractForward
		if p.Kind == kindSubmit {
			forward = cfg.Hooks.DSSubmitForward
			if d := hooks.Decide(s, facts); !d.Forward {
				p.Reason, p.Updated = d.Reason, now
				left = append(left, p)
				fmt.Fprintf(out, "still withheld: %s %s: %s\n", p.Kind, s.Describe(), d.Reason)
				continue
			}
		}
		if forward == "" {
			p.Reason, p.Updated = fmt.Sprintf("covered now, but no forward command is configured ([hooks] ds_%s_forward)", strings.TrimPrefix(p.Kind, "ds-")), now
			left = append(left, p)
			fmt.Fprintf(out, "still withheld: %s %s: %s\n", p.Kind, s.Describe(), p.Reason)
			continue
		}
		p.Attempts++
		if err := runForward(ctx, forward, []hooks.Submission{s}, io.Discard, lg.stderr); err != nil {
			p.Reason, p.Updated = "forward command failed: "+err.Error(), now
			left = append(left, p)
			fmt.Fprintf(out, "still withheld: %s %s: %s\n", p.Kind, s.Describe(), p.Reason)
			continue
		}
		lg.log("%s: released %s: forwarded", p.Kind, s.Describe())
		fmt.Fprintf(out, "released: %s %s\n", p.Kind, s.Describe())
	}
	if err := ledger.SavePending(cfg.StateDir, left); err != nil {
		return len(left), err
	}
	return len(left), nil
}

func printPending(w io.Writer, list []ledger.Pending) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "nothing withheld")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tZONE\tKEYTAG\tRECEIVED\tREASON")
	for _, p := range list {
		zone, tag := p.Zone, fmt.Sprint(p.KeyTag)
		if zone == "" {
			zone, tag = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Kind, zone, tag, p.Received.Format("2006-01-02T15:04Z"), p.Reason)
	}
	return tw.Flush()
}
