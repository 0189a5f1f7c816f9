package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// benchImplementations measures verify and check at about n keys on each
// PKCS#11 implementation the tests run on, beside pkcs11-tool's listing of
// the same token: the real enforcer makes the keys (EC P-256, RSA 2048 on
// openCryptoki), a confirmed ceremony covers them. openCryptoki runs in a
// private mount and IPC namespace: this program runs itself again there.
func benchImplementations(bin string, n, runs int, only string) (string, error) {
	var tables []string
	for _, impl := range []string{"softhsm", "nss", "opencryptoki"} {
		if only != "" && impl != only {
			continue
		}
		var t string
		var err error
		if impl == "opencryptoki" && os.Getenv(sandbox.OpenCryptokiNamespace) == "" {
			t, err = inNamespace(bin, n, runs)
		} else {
			t, err = benchImplementation(bin, impl, n, runs)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", impl, err)
		}
		tables = append(tables, t)
	}
	return strings.Join(tables, "\n"), nil
}

// inNamespace runs the openCryptoki part in a private namespace and
// returns its table.
func inNamespace(bin string, n, runs int) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("unshare", "-m", "-i", "--propagation", "private", self,
		"-implementations", fmt.Sprint(n), "-runs", fmt.Sprint(runs), "-only", "opencryptoki", "-table", bin)
	cmd.Env = append(os.Environ(), sandbox.OpenCryptokiNamespace+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("in a private namespace: %w", err)
	}
	return out.String(), nil
}

func benchImplementation(bin, impl string, n, runs int) (string, error) {
	dir, err := os.MkdirTemp("", "ods-keyguard-bench-"+impl)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	module, kasp, kind := sandbox.Module, kaspFor(n), "ECDSA P-256"
	var env []string
	switch impl {
	case "softhsm":
		conf, err := sandbox.SoftHSM(filepath.Join(dir, "softhsm"))
		if err != nil {
			return "", err
		}
		if err := sandbox.InitToken(conf, "ods-a", sandbox.PIN); err != nil {
			return "", err
		}
		env = []string{"SOFTHSM2_CONF=" + conf}
	case "nss":
		nss, err := sandbox.NSSModule()
		if err != nil {
			return "", err
		}
		if module, err = sandbox.BuildWrapper(filepath.Join(dir, "p11wrap")); err != nil {
			return "", err
		}
		tok := filepath.Join(dir, "nss", "ods-a")
		if err := sandbox.NSSInitToken(tok, sandbox.PIN); err != nil {
			return "", err
		}
		env = sandbox.NSSEnv(nss, tok, "ods-a")
	case "opencryptoki":
		o, err := sandbox.StartOpenCryptoki(filepath.Join(dir, "ock"))
		if err != nil {
			return "", err
		}
		defer o.Stop()
		if err := o.InitToken(0, "ods-a", sandbox.PIN); err != nil {
			return "", err
		}
		module, kind = sandbox.OpenCryptokiModule, "RSA 2048"
		kasp = strings.ReplaceAll(kasp, `<Algorithm length="256">13</Algorithm>`, `<Algorithm length="2048">8</Algorithm>`)
	}
	// The module reads its environment: so do this program's children.
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	fmt.Fprintf(os.Stderr, "bench: %s: the enforcer generates about %d keys...\n", impl, n)
	start := time.Now()
	e, err := sandbox.Start(sandbox.Options{Dir: filepath.Join(dir, "ods"), Module: module, Env: env, Kasp: kasp,
		SoftHSMConf: os.Getenv("SOFTHSM2_CONF")})
	if err != nil {
		return "", err
	}
	defer e.Close()
	if err := e.AddZoneNoWait("example.com", "test"); err != nil {
		return "", err
	}
	keys, err := waitKeys(e.DB, n, 90*time.Minute)
	if err == nil {
		err = e.WaitSignconf("example.com")
	}
	if err != nil {
		return "", err
	}
	gen := time.Since(start)
	e.Stop()
	cfg := filepath.Join(dir, "keyguard.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n", e.Conf, filepath.Join(dir, "state"))), 0o600); err != nil {
		return "", err
	}
	for _, step := range []string{"prepare", "done"} {
		if out, err := exec.Command(bin, "--config", cfg, "backup", step).CombinedOutput(); err != nil {
			return "", fmt.Errorf("backup %s: %v: %s", step, err, out)
		}
	}
	listing := "pkcs11-tool -O --type privkey"
	cmds := []struct {
		name, ref string
		argv      []string
	}{
		{listing, "", []string{"pkcs11-tool", "--module", module, "--token-label", "ods-a", "--pin", sandbox.PIN, "-O", "--type", "privkey"}},
		{"ods-keyguard verify", listing, []string{bin, "--config", cfg, "verify"}},
		{"ods-keyguard check", listing, []string{bin, "--config", cfg, "check", "-t", "600"}},
	}
	samples := make([]sample, len(cmds))
	// Interleaved, so that none gets the warmer cache.
	for i := 0; i < runs; i++ {
		for j, c := range cmds {
			samples[j].name, samples[j].ref = c.name, c.ref
			wall, rss, err := measure(c.argv, "", 10*time.Minute)
			if err != nil {
				return "", fmt.Errorf("%s: %w", c.name, err)
			}
			samples[j].wall = append(samples[j].wall, wall)
			samples[j].rssKiB = append(samples[j].rssKiB, rss)
			fmt.Fprintf(os.Stderr, "bench: %s, %d keys: %s: %s\n", impl, keys, c.name, wall.Round(time.Millisecond))
		}
	}
	title := map[string]string{"softhsm": "SoftHSMv2", "nss": "NSS softoken (through the test wrapper module)", "opencryptoki": "openCryptoki's soft token (pkcsslotd, private namespace)"}[impl]
	t := table(keys, gen, samples)
	t = strings.Replace(t, "one SoftHSMv2 token", "one token of "+title, 1)
	t = strings.Replace(t, "(ECDSA P-256, pool pre-generation)", "("+kind+", pool pre-generation)", 1)
	return t, nil
}

func writeImplementations(path, binary, tables string) error {
	header := "## PKCS#11 implementations: verify and check\n\nRun %s, `make bench-implementations`, %s.\nMedian of the runs, the commands interleaved; peak RSS is the process's maximum resident set.\nEach implementation's token holds the keys its own enforcer made; ods-keyguard is compared with pkcs11-tool's listing of the same token.\n\n"
	return writeSection(path, "implementations", fmt.Sprintf(header, machine(), version(binary))+tables)
}
