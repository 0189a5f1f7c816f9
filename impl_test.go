package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// Scripts marked "# implementations: softhsm nss" run on SoftHSMv2 (in
// TestScripts, like every script) and again on NSS softoken, Mozilla's
// software token, through the wrapper module the harness builds
// (internal/lab/sandbox/csrc/p11wrap.c): the enforcer makes its keys there and
// ods-keyguard reads them. The same steps, the same expected output, but
// for lines guarded by [impl:softhsm] or [impl:nss] where the two differ
// on purpose. Such scripts handle tokens with the "token" command, which
// does the same on each implementation.
var nssToo = regexp.MustCompile(`(?m)^# implementations: .*\bnss\b`)

func TestScriptsNSS(t *testing.T) {
	sandbox.NeedTools(t, "certutil", "gcc", "pkcs11-tool", "ods-enforcerd")
	if _, err := sandbox.NSSModule(); err != nil {
		sandbox.Missing(t, "%v", err)
	}
	nss := scriptsWhere(t, nssToo.Match)
	if len(nss) == 0 {
		t.Fatal("no script runs on NSS softoken")
	}
	runScriptsOn(t, "sqlite", "nss", nss)
}

// Scripts marked "# implementations: ... opencryptoki" run on openCryptoki
// 3.8.1's soft token too: IBM's stack, a slot daemon and shared memory, the
// shape of many vendor HSM clients; RSA only, and three wrong PINs lock its
// user PIN. Its paths are compiled in, so the test runs itself again in a
// private mount and IPC namespace (unshare, as root), where it mounts its
// own folders over them and starts pkcsslotd. The scripts run one at a
// time: each initializes the one soft token afresh.
var openCryptokiToo = regexp.MustCompile(`(?m)^# implementations: .*\bopencryptoki\b`)

func TestScriptsOpenCryptoki(t *testing.T) {
	sandbox.NeedTools(t, "pkcsslotd", "pkcsconf", "unshare", "mount", "gcc", "pkcs11-tool", "ods-enforcerd")
	if os.Getuid() != 0 {
		sandbox.Missing(t, "openCryptoki: needs root for its private namespace")
	}
	if _, err := os.Stat(sandbox.OpenCryptokiModule); err != nil {
		sandbox.Missing(t, "%v", err)
	}
	if os.Getenv(sandbox.OpenCryptokiNamespace) == "" {
		// The same -run pattern, so that a single script runs alone here too.
		run := "^TestScriptsOpenCryptoki$"
		if f := flag.Lookup("test.run"); f != nil {
			if _, sub, ok := strings.Cut(f.Value.String(), "/"); ok {
				run += "/" + sub
			}
		}
		args := []string{"-m", "-i", "--propagation", "private", os.Args[0], "-test.run", run, "-test.count=1"}
		if testing.Verbose() {
			args = append(args, "-test.v")
		}
		cmd := exec.Command("unshare", args...)
		cmd.Env = append(os.Environ(), sandbox.OpenCryptokiNamespace+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a private namespace:\n%s", out)
		if err != nil {
			t.Fatalf("openCryptoki scripts: %v", err)
		}
		return
	}
	ock := scriptsWhere(t, openCryptokiToo.Match)
	if len(ock) == 0 {
		t.Fatal("no script runs on openCryptoki")
	}
	o, err := sandbox.StartOpenCryptoki(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// After the scripts, which run once this function has returned.
	t.Cleanup(o.Stop)
	openCryptoki = o
	for _, f := range ock {
		// One at a time: they share the slot daemon. t.Run returns once
		// the script, a parallel subtest, has ended.
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			runScriptsOn(t, "sqlite", "opencryptoki", []string{f})
		})
	}
}

// openCryptoki is the running pkcsslotd, in the namespace's test process.
var openCryptoki *sandbox.OpenCryptoki

// setupImpl makes the script's environment point at the implementation:
// $IMPL, and for NSS the wrapper as $MODULE with the token ods-a's folder.
func setupImpl(env *testscript.Env, impl string) error {
	env.Setenv("IMPL", impl)
	// Where a user that cannot write state_dir keeps its own record of
	// refused PINs (pinlock.UserStore): in the script's folder, open to
	// every user as /var/tmp is, not on the machine.
	xdg := filepath.Join(env.WorkDir, "xdg-state")
	if err := os.MkdirAll(xdg, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(xdg, 0o1777); err != nil {
		return err
	}
	env.Setenv("XDG_STATE_HOME", xdg)
	env.Setenv("P11WRAP_LOG", "")
	env.Setenv("P11WRAP_MODULE", "")
	env.Setenv("P11WRAP_NSS_DIR", "")
	env.Setenv("P11WRAP_NSS_LABEL", "")
	env.Setenv("P11QUIRKS_MODULE", "")
	env.Setenv("QUIRKS", "")
	// What the keys are: the pools' names and the DNSKEYs differ by it.
	env.Setenv("ALG", "13")
	env.Setenv("BITS", "256")
	if impl == "opencryptoki" {
		env.Setenv("MODULE", sandbox.OpenCryptokiModule)
		env.Setenv("ALG", "8")
		env.Setenv("BITS", "2048")
		// enforcer start takes $WORK/kasp.xml.
		return os.WriteFile(filepath.Join(env.WorkDir, "kasp.xml"), []byte(sandbox.RSAKasp), 0o644)
	}
	if impl != "nss" {
		return nil
	}
	nss, err := sandbox.NSSModule()
	if err != nil {
		return err
	}
	so, err := sandbox.BuildWrapper(filepath.Join(env.WorkDir, "p11wrap"))
	if err != nil {
		return err
	}
	env.Setenv("MODULE", so)
	env.Setenv("P11WRAP_MODULE", nss)
	env.Setenv("P11WRAP_NSS_DIR", filepath.Join(env.WorkDir, "nss", "ods-a"))
	env.Setenv("P11WRAP_NSS_LABEL", "ods-a")
	return nil
}

// wrapperEnv is the wrapper's part of the script's environment, for the
// enforcer (whose hooks and module see it) and pkcs11-tool.
func wrapperEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"P11WRAP_MODULE", "P11WRAP_NSS_DIR", "P11WRAP_NSS_LABEL", "P11WRAP_LOG", "P11QUIRKS_MODULE"} {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// token spy: put the wrapper in front of $MODULE (the enforcer's module and
// ods-keyguard's), logging every C_Login to $WORK/p11.log: user type and
// return value, never the PIN. Run it before enforcer start.
// token init [-pin P] LABEL: make a token on the script's implementation.
// token keygen [-pin P] [-on NAME] LABEL ID / token delete [-pin P] [-on
// NAME] LABEL ID: make (EC P-256, or -type) or delete the key pair whose
// CKA_ID is ID, on the token or on its copy NAME (LABEL is then $LABEL_NAME).
// token copy LABEL NAME: copy the token's keys to a backup token, as a
// backup of the HSM would: on SoftHSMv2 and NSS its storage to $WORK/NAME,
// the same label and serial; on openCryptoki into slot 1, labelled NAME.
// Sets $ENV_NAME to the TOML pairs of an env = { ... } that opens the copy
// and $LABEL_NAME to its label.
// token restore NAME LABEL: put the copy NAME's keys back on the token.
func cmdToken(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: token spy | init|keygen|delete [-pin P] [-type T] LABEL [ID] | copy LABEL NAME | restore NAME LABEL"
	if neg || len(args) == 0 {
		ts.Fatalf("%s", usage)
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	pin := fs.String("pin", sandbox.PIN, "user PIN")
	keyType := fs.String("type", "EC:prime256v1", "key type for keygen")
	on := fs.String("on", "", "keygen, delete: on the copy NAME (token copy)")
	if err := fs.Parse(args[1:]); err != nil {
		ts.Fatalf("token: %v", err)
	}
	rest := fs.Args()
	impl := ts.Getenv("IMPL")
	work := ts.Getenv("WORK")
	// env opens the token labelled label on the implementation.
	env := func(label string) []string {
		switch {
		case *on != "" && impl == "nss":
			return append(wrapperEnv(ts), "P11WRAP_NSS_DIR="+filepath.Join(work, *on, "nss"), "P11WRAP_NSS_LABEL="+label)
		case *on != "":
			return append(wrapperEnv(ts), "SOFTHSM2_CONF="+filepath.Join(work, *on, "softhsm2.conf"))
		}
		if impl == "nss" {
			return append(wrapperEnv(ts), "P11WRAP_NSS_DIR="+filepath.Join(work, "nss", label), "P11WRAP_NSS_LABEL="+label)
		}
		return append(wrapperEnv(ts), "SOFTHSM2_CONF="+ts.Getenv("SOFTHSM2_CONF"))
	}
	copyDir := func(from, to string) {
		ts.Check(os.RemoveAll(to))
		ts.Check(os.MkdirAll(to, 0o700))
		if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
			ts.Fatalf("token: cp: %v: %s", err, out)
		}
	}
	switch {
	case args[0] == "spy" && len(rest) == 0:
		if ts.Getenv("P11WRAP_MODULE") == "" {
			so, err := sandbox.BuildWrapper(filepath.Join(work, "p11wrap"))
			ts.Check(err)
			ts.Setenv("P11WRAP_MODULE", ts.Getenv("MODULE"))
			ts.Setenv("MODULE", so)
		}
		ts.Setenv("P11WRAP_LOG", filepath.Join(work, "p11.log"))
	case args[0] == "init" && len(rest) == 1 && impl == "opencryptoki":
		if rest[0] != "ods-a" {
			ts.Fatalf("token init: openCryptoki's HSM here is ods-a (slot 0)")
		}
		ts.Check(openCryptoki.Reset())
		ts.Check(openCryptoki.InitToken(0, rest[0], *pin))
	case args[0] == "copy" && len(rest) == 2 && impl == "opencryptoki":
		// Slot 1 is the copy, under its own label: one module sees both.
		ts.Check(openCryptoki.InitToken(1, rest[1], *pin))
		ts.Check(openCryptoki.CopyObjects(0, 1))
		ts.Setenv("ENV_"+rest[1], "")
		ts.Setenv("LABEL_"+rest[1], rest[1])
	case args[0] == "restore" && len(rest) == 2 && impl == "opencryptoki":
		ts.Check(openCryptoki.CopyObjects(1, 0))
	case args[0] == "init" && len(rest) == 1:
		if impl == "nss" {
			ts.Check(sandbox.NSSInitToken(filepath.Join(work, "nss", rest[0]), *pin))
			return
		}
		conf, err := sandbox.SoftHSM(filepath.Join(work, "softhsm"))
		ts.Check(err)
		ts.Check(sandbox.InitToken(conf, rest[0], *pin))
	case args[0] == "keygen" && len(rest) == 2:
		ts.Check(sandbox.PKCS11ToolWith(ts.Getenv("MODULE"), env(rest[0]), rest[0], *pin, "--keypairgen", "--key-type", *keyType,
			"--id", rest[1], "--label", rest[1], "--usage-sign"))
	case args[0] == "delete" && len(rest) == 2:
		ts.Check(sandbox.PKCS11ToolWith(ts.Getenv("MODULE"), env(rest[0]), rest[0], *pin, "--delete-object", "--type", "privkey", "--id", rest[1]))
		sandbox.PKCS11ToolWith(ts.Getenv("MODULE"), env(rest[0]), rest[0], *pin, "--delete-object", "--type", "pubkey", "--id", rest[1])
	case args[0] == "copy" && len(rest) == 2:
		label, name := rest[0], rest[1]
		dst := filepath.Join(work, name)
		if impl == "nss" {
			copyDir(filepath.Join(work, "nss", label), filepath.Join(dst, "nss"))
			ts.Setenv("ENV_"+name, fmt.Sprintf("P11WRAP_NSS_DIR = %q, P11WRAP_NSS_LABEL = %q", filepath.Join(dst, "nss"), label))
			ts.Setenv("LABEL_"+name, label)
			return
		}
		copyDir(filepath.Join(work, "softhsm", "tokens"), filepath.Join(dst, "tokens"))
		conf, err := sandbox.SoftHSM(dst)
		ts.Check(err)
		ts.Setenv("ENV_"+name, fmt.Sprintf("SOFTHSM2_CONF = %q", conf))
		ts.Setenv("LABEL_"+name, label)
	case args[0] == "restore" && len(rest) == 2:
		name, label := rest[0], rest[1]
		if impl == "nss" {
			copyDir(filepath.Join(work, name, "nss"), filepath.Join(work, "nss", label))
			return
		}
		copyDir(filepath.Join(work, name, "tokens"), filepath.Join(work, "softhsm", "tokens"))
	default:
		ts.Fatalf("%s", usage)
	}
}

// implCondition answers [impl:NAME]: whether the scripts run on NAME.
func implCondition(impl, cond string) (bool, bool) {
	name, ok := strings.CutPrefix(cond, "impl:")
	if !ok {
		return false, false
	}
	return impl == name, true
}
