// Command demo builds a sandbox with a real SoftHSMv2 token and a real
// ods-enforcerd holding one zone, then runs ods-keyguard's main job on it:
// status, inventory, verify and check, then a backup ceremony verified on
// a backup token, and check again.
//
// Usage: go run ./internal/lab/demo [-keep] BINARY
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

func main() {
	keep := flag.Bool("keep", false, "keep the sandbox folder")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: demo [-keep] BINARY")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(binary string, keep bool) error {
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
	step("a SoftHSMv2 token \"ods-a\" in %s", filepath.Dir(conf))
	if err := sandbox.InitToken(conf, "ods-a", sandbox.PIN); err != nil {
		return err
	}
	step("ods-enforcerd with <RequireBackup/>, policy \"test\" (ECDSA P-256)")
	e, err := sandbox.Start(sandbox.Options{
		Dir:          filepath.Join(dir, "ods"),
		SoftHSMConf:  conf,
		Repositories: []sandbox.Repo{{Name: "SoftHSM", Label: "ods-a", PIN: sandbox.PIN, RequireBackup: true}},
	})
	if err != nil {
		return err
	}
	defer e.Close()
	step("zone example.com added: the enforcer makes its keys and signs")
	if err := e.AddZone("example.com", "test"); err != nil {
		return err
	}
	// The backup token is a copy of the token folder, as a SoftHSMv2 backup is.
	vault, err := sandbox.SoftHSM(filepath.Join(dir, "vault"))
	if err != nil {
		return err
	}
	pin := filepath.Join(dir, "vault.pin")
	if err := os.WriteFile(pin, []byte(sandbox.PIN+"\n"), 0o600); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "keyguard.toml")
	text := fmt.Sprintf(`opendnssec_conf = %q
state_dir = %q

[backup_token.vault]
module = %q
token_label = "ods-a"
pin_file = %q
env = { SOFTHSM2_CONF = %q }
`, e.Conf, filepath.Join(dir, "state"), sandbox.Module, pin, vault)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	run := func(args ...string) error {
		step("ods-keyguard %s", strings.Join(args, " "))
		cmd := exec.Command(binary, append([]string{"--config", cfg}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			fmt.Printf("(exit status %d)\n", ee.ExitCode())
			return nil
		}
		return err
	}
	for _, args := range [][]string{{"status"}, {"inventory"}, {"verify"}, {"check"}, {"backup", "prepare", "--operator", "demo"}} {
		if err := run(args...); err != nil {
			return err
		}
	}
	step("procedure steps 2-6: the HSM backed up onto the backup token (a copy of its folder)")
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "softhsm", "tokens")+"/.", filepath.Join(dir, "vault", "tokens")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	for _, args := range [][]string{{"backup", "done", "--backup-token", "vault", "--operator", "demo"}, {"backup", "history"}, {"status"}, {"check"}} {
		if err := run(args...); err != nil {
			return err
		}
	}
	if keep {
		step("kept: %s (configuration %s; the enforcer is stopped)", dir, cfg)
	}
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}
