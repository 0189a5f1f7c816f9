// Command demo builds a sandbox with a real SoftHSMv2 token and a real
// ods-enforcerd holding one zone, then runs ods-keyguard's main job on it:
// status, inventory, verify and check, then a backup ceremony verified on
// a backup token, and check again. As root (the signer needs a mount
// namespace of its own) a real ods-signerd signs the zone through the
// publish gate: the gate holds the first signed version, whose keys have
// no backup yet, and backup done publishes it.
//
// Usage: go run ./internal/lab/demo [-keep] BINARY
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/gatewait"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

func main() {
	keep := flag.Bool("keep", false, "keep the sandbox folder")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: demo [-keep] BINARY")
		os.Exit(2)
	}
	if err := run(os.Stdout, flag.Arg(0), *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(w io.Writer, binary string, keep bool) error {
	binary, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ods-keyguard-demo")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	conf, err := sandbox.SoftHSM(filepath.Join(dir, "softhsm"))
	if err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	step(w, "a SoftHSMv2 token \"ods-a\" in %s", filepath.Dir(conf))
	if err := sandbox.InitToken(conf, "ods-a", sandbox.PIN); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "keyguard.toml")
	state := filepath.Join(dir, "state")
	zones := filepath.Join(dir, "zones")
	opts := sandbox.Options{
		Dir:          filepath.Join(dir, "ods"),
		SoftHSMConf:  conf,
		Repositories: []sandbox.Repo{{Name: "SoftHSM", Label: "ods-a", PIN: sandbox.PIN, RequireBackup: true}},
	}
	signer, why := canSign()
	if signer {
		// The gate as a package installs it: a link named
		// ods-keyguard-publish, the signer's NotifyCommand.
		link := filepath.Join(dir, "bin", "ods-keyguard-publish")
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(binary, link); err != nil {
			return err
		}
		if err := os.MkdirAll(zones, 0o755); err != nil {
			return err
		}
		opts.Signer = true
		opts.Notify = link + " %zone %zonefile"
		opts.Env = []string{config.EnvVar + "=" + cfg}
		step(w, "ods-enforcerd with <RequireBackup/>, policy \"test\" (ECDSA P-256), and ods-signerd whose NotifyCommand is the publish gate")
	} else {
		step(w, "ods-enforcerd with <RequireBackup/>, policy \"test\" (ECDSA P-256); no signer: %s", why)
	}
	e, err := sandbox.Start(opts)
	if err != nil {
		return err
	}
	defer e.Close()
	// The backup token is a copy of the token folder, as a SoftHSMv2 backup is.
	vault, err := sandbox.SoftHSM(filepath.Join(dir, "vault"))
	if err != nil {
		return err
	}
	pin := filepath.Join(dir, "vault.pin")
	if err := os.WriteFile(pin, []byte(sandbox.PIN+"\n"), 0o600); err != nil {
		return err
	}
	text := fmt.Sprintf(`opendnssec_conf = %q
state_dir = %q

[backup_token.vault]
module = %q
token_label = "ods-a"
pin_file = %q
env = { SOFTHSM2_CONF = %q }
`, e.Conf, state, sandbox.Module, pin, vault)
	if signer {
		text += fmt.Sprintf(`
[publish]
zone_file = %q
reload    = ["true"] # no name server in the demo: nothing to tell
`, filepath.Join(zones, "%zone.zone"))
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	step(w, "zone example.com added: the enforcer makes its keys")
	if err := e.AddZone("example.com", "test"); err != nil {
		return err
	}
	if signer {
		step(w, "ods-signerd signs example.com; the publish gate reviews what it wrote")
		if err := e.Sign("example.com"); err != nil {
			return err
		}
		if err := gatewait.Decided(state, "example.com", e.Signed("example.com")); err != nil {
			return err
		}
		served(w, zones)
	}
	run := func(args ...string) error {
		step(w, "ods-keyguard %s", strings.Join(args, " "))
		cmd := exec.Command(binary, append([]string{"--config", cfg}, args...)...)
		cmd.Stdout, cmd.Stderr = w, w
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			fmt.Fprintf(w, "(exit status %d)\n", ee.ExitCode())
			return nil
		}
		return err
	}
	before := [][]string{{"status"}, {"inventory"}, {"verify"}, {"check"}, {"backup", "prepare", "--operator", "demo"}}
	after := [][]string{{"backup", "done", "--backup-token", "vault", "--operator", "demo"}, {"backup", "history"}, {"status"}, {"check"}}
	if signer {
		before = append([][]string{{"publish", "status"}}, before...)
		after = append(after, []string{"publish", "status"})
	}
	for _, args := range before {
		if err := run(args...); err != nil {
			return err
		}
	}
	step(w, "procedure steps 2-6: the HSM backed up onto the backup token (a copy of its folder)")
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "softhsm", "tokens")+"/.", filepath.Join(dir, "vault", "tokens")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	for _, args := range after {
		if err := run(args...); err != nil {
			return err
		}
	}
	if signer {
		served(w, zones)
	}
	if keep {
		step(w, "kept: %s (configuration %s; the enforcer is stopped)", dir, cfg)
	}
	return nil
}

// canSign says whether the signer can run here: it needs root (a mount
// namespace of its own, where the sandbox's run folder is /run/opendnssec)
// and ods-signerd.
func canSign() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "it needs root (a mount namespace of its own); run the demo as root to see the publish gate"
	}
	for _, p := range []string{"ods-signerd", "ods-signer", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			return false, p + " is not installed (./scripts/setup.sh installs it)"
		}
	}
	return true, ""
}

// served lists what the name servers would read.
func served(w io.Writer, zones string) {
	names, _ := filepath.Glob(filepath.Join(zones, "*.zone"))
	if len(names) == 0 {
		step(w, "what the name servers read (%s): nothing yet", zones)
		return
	}
	step(w, "what the name servers read (%s): %s", zones, strings.Join(names, ", "))
}

func step(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "\n== "+format+"\n", args...)
}
