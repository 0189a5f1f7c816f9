package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

func TestMain(m *testing.M) {
	exit := func() { os.Exit(Main()) }
	testscript.Main(stopShared{m}, map[string]func(){
		"ods-keyguard":            exit,
		"ods-keyguard-ds-submit":  exit,
		"ods-keyguard-ds-retract": exit,
		"check_ods_keyguard":      exit,
		"ods-keyguard-publish":    exit,
	})
}

// stopShared stops the MariaDB server the scripts shared, after them all.
type stopShared struct{ m *testing.M }

func (s stopShared) Run() int {
	before := hostState()
	code := s.m.Run()
	sandbox.StopShared()
	removeDeb()
	if after := hostState(); after != before {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed the host's %s (a script without state_dir?):\nbefore: %s\nafter:  %s\n", hostStateDir, before, after)
		return 1
	}
	return code
}

// hostStateDir is ods-keyguard's default state_dir: no test may write there.
const hostStateDir = "/var/lib/opendnssec/keyguard"

// hostState sums up what hostStateDir holds: names, sizes and times.
func hostState() string {
	entries, err := os.ReadDir(hostStateDir)
	if err != nil {
		return "absent"
	}
	var b strings.Builder
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d ", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// In CI (CI=true) a missing tool fails a script instead of skipping it.
var strictTools = sandbox.Strict

// startTime is when the tests began: nothing in the source tree may be newer.
var startTime = time.Now()

// The scripts run with the enforcer's database in SQLite and ods-keyguard's
// ledger in state_dir. Those marked "# backends: sqlite mysql" run again
// against the MySQL enforcer (opendnssec-enforcer-mysql) and a MySQL
// ledger on a sandboxed MariaDB server: the same steps, the same expected
// output, so that any difference between the backends shows.
func TestScripts(t *testing.T) {
	runScripts(t, "sqlite", scriptsWhere(t, func(data []byte) bool { return !mysqlOnly.Match(data) && !noLab.Match(data) }))
}

// scriptsWhere lists the scripts whose text keep says yes to.
func scriptsWhere(t *testing.T, keep func(data []byte) bool) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if keep(data) {
			out = append(out, f)
		}
	}
	return out
}

// Script markers: run on both backends, on MySQL only (a pair of hosts
// sharing a MySQL ledger), or without the lab at all.
var (
	bothBackends = regexp.MustCompile(`(?m)^# backends: sqlite mysql$`)
	mysqlOnly    = regexp.MustCompile(`(?m)^# backends: mysql$`)
	noLab        = regexp.MustCompile(`(?m)^# lab: none$`)
)

// TestScriptsNoLab runs the scripts marked "# lab: none": argument
// parsing, rendering, configuration errors. They get no sandbox (no
// SoftHSMv2 folder, no daemon, no database) and only the commands that
// need none, so a script that reaches for the lab fails instead of
// quietly starting it; they need neither root nor the tools the lab
// installs.
func TestScriptsNoLab(t *testing.T) {
	plain := scriptsWhere(t, noLab.Match)
	if len(plain) == 0 {
		t.Fatal("no script is marked # lab: none")
	}
	testscript.Run(t, testscript.Params{
		Files:               plain,
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       os.Getenv("ODS_KEYGUARD_UPDATE_GOLDEN") != "",
		Setup: func(env *testscript.Env) error {
			// No token of the machine is reachable: the module finds no
			// configuration.
			env.Setenv("SOFTHSM2_CONF", filepath.Join(env.WorkDir, "no-softhsm2.conf"))
			env.Setenv("ODS_KEYGUARD_CONFIG", filepath.Join(env.WorkDir, "keyguard.toml"))
			env.Setenv("CI", os.Getenv("CI"))
			return nil
		},
		Condition: condition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":   cmdExitcode,
			"envsubst":   cmdEnvsubst,
			"setvar":     cmdSetvar,
			"jsonschema": cmdJSONSchema,
		},
	})
}

func TestScriptsMySQL(t *testing.T) {
	sandbox.NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb", "apt-get", "dpkg-deb")
	both := scriptsWhere(t, func(data []byte) bool { return bothBackends.Match(data) || mysqlOnly.Match(data) })
	if len(both) == 0 {
		t.Fatal("no script runs on both backends")
	}
	runScripts(t, "mysql", both)
}

func runScripts(t *testing.T, backend string, files []string) {
	runScriptsOn(t, backend, "softhsm", files)
}

// runScriptsOn runs the scripts on a backend and a PKCS#11 implementation
// (impl_test.go).
func runScriptsOn(t *testing.T, backend, impl string, files []string) {
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       os.Getenv("ODS_KEYGUARD_UPDATE_GOLDEN") != "" && backend == "sqlite",
		Setup: func(env *testscript.Env) error {
			if err := setupScript(env, backend); err != nil {
				return err
			}
			return setupImpl(env, impl)
		},
		Condition: func(cond string) (bool, error) {
			if ok, isImpl := implCondition(impl, cond); isImpl {
				return ok, nil
			}
			return condition(cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":   cmdExitcode,
			"envsubst":   cmdEnvsubst,
			"softhsm":    cmdSoftHSM,
			"enforcer":   cmdEnforcer,
			"waitdb":     cmdWaitDB,
			"dbvar":      cmdDBVar,
			"cpdir":      cmdCpdir,
			"syslogd":    cmdSyslogd,
			"signzone":   cmdSignZone,
			"noproc":     cmdNoProc,
			"parent":     cmdParent,
			"setvar":     cmdSetvar,
			"tmpfs":      cmdTmpfs,
			"ageledger":  cmdAgeLedger,
			"killat":     cmdKillAt,
			"runas":      cmdRunAs,
			"nagios":     cmdNagios,
			"jsonschema": cmdJSONSchema,
			"logged":     cmdLogged,
			"token":      cmdToken,
			"forgeds":    cmdForgeDS,
			"gendnskeys": cmdGenDNSKEYs,
			"blackhole":  cmdBlackhole,
			"galera":     cmdGalera,
			"childzone":  cmdChildZone,
			"zoneserver": cmdZoneServer,
			"signer":     cmdSigner,
			"validate":   cmdValidate,
			"ledgeredit": cmdLedgerEdit,
			"quirks":     cmdQuirks,
		},
	})
}

// setupScript points SOFTHSM2_CONF into $WORK, so that no script can touch
// a token of the machine, and the configuration at $WORK/keyguard.toml.
func setupScript(env *testscript.Env, backend string) error {
	// Registered first, so it runs last: whatever a script started that
	// outlives it (a daemon a failed script did not get to stop) is
	// killed, or the script's background command, whose output pipe the
	// daemon holds, would keep the test waiting forever.
	env.Defer(func() { killStrays(env.T(), env.WorkDir) })
	conf, err := sandbox.SoftHSM(filepath.Join(env.WorkDir, "softhsm"))
	if err != nil {
		return err
	}
	env.Setenv("BACKEND", backend)
	env.Setenv("LEDGER", "")
	// $LEDGER_KEYS: the keys of $LEDGER without its [ledger] line, for a
	// script that adds keys of its own to [ledger].
	env.Setenv("LEDGER_KEYS", "")
	slot := &enforcerSlot{}
	if backend == "mysql" {
		// The enforcer's database is made at "enforcer start"; the ledger
		// here: $LEDGER, at the end of a script's keyguard.toml, names it.
		srv, err := sandbox.SharedMariaDB()
		if err != nil {
			return err
		}
		slot.server = srv
		db, err := srv.NewDatabase("keyguard")
		if err != nil {
			return err
		}
		env.Defer(func() { db.Drop() })
		pw := filepath.Join(env.WorkDir, "ledger.pw")
		if err := os.WriteFile(pw, []byte(db.Password+"\n"), 0o600); err != nil {
			return err
		}
		// What an operator does once: ods-keyguard ledger init.
		srvConf := mysqlx.Server{Host: "127.0.0.1", Port: srv.Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := ledger.New(ctx, ledger.Options{MySQL: &srvConf, Create: true})
		if err != nil {
			return err
		}
		err = l.Init(ctx)
		l.Close()
		if err != nil {
			return err
		}
		keys := fmt.Sprintf("backend = \"mysql\"\ndsn = %q\npassword_file = %q\n", db.DSN(), pw)
		env.Setenv("LEDGER", "[ledger]\n"+keys)
		env.Setenv("LEDGER_KEYS", keys)
		env.Setenv("LEDGER_DSN", db.DSN())
		env.Setenv("LEDGER_USER", db.User)
		env.Setenv("LEDGER_DB", db.Name)
		env.Setenv("MARIADB_SOCKET", srv.Socket)
	}
	env.Setenv("SOFTHSM2_CONF", conf)
	env.Setenv("ODS_KEYGUARD_CONFIG", filepath.Join(env.WorkDir, "keyguard.toml"))
	env.Setenv("MODULE", sandbox.Module)
	// What the package ships, for scripts that run it as shipped (the
	// example forward command).
	src, err := os.Getwd()
	if err != nil {
		return err
	}
	env.Setenv("PACKAGING", filepath.Join(src, "packaging"))
	env.Setenv("CI", os.Getenv("CI"))
	env.Values["enforcer"] = slot
	env.Values["parent"] = &parentSlot{}
	env.Values["galera"] = &galeraSlot{}
	env.Values["zoneserver"] = &zoneSlot{}
	env.Values["validator"] = &validatorSlot{}
	return nil
}

var tools = map[string][]string{
	"softhsm":  {"softhsm2-util", "pkcs11-tool"},
	"enforcer": {"ods-enforcerd", "ods-enforcer", "sqlite3"},
	"promtool": {"promtool"},
	"root":     {},
	"named":    {"named", "nsupdate", "dnssec-dsfromkey", "rndc"},
	// zonesigner: signed zones made as an operator would, for the publish
	// gate's faults (bind9-utils).
	"zonesigner": {"dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey"},
	"signer":     {"ods-signerd", "ods-signer", "unshare", "nsenter", "mount", "delv"},
	"nagios":     {"nagios4"},
	"mariadb":    {"mariadbd", "mariadb-install-db", "mariadb"},
	"galera":     {"mariadbd", "mariadb-install-db", "mariadb", "rsync", "wsrep_sst_rsync"},
	"gcc":        {"gcc"},
	"groff":      {"groff", "gropdf"},
	"sudo":       {"sudo"},
	// failpoint: a test binary built with -tags failpoint (make test),
	// for the scripts that kill or pause a step.
	"failpoint": {},
}

func condition(cond string) (bool, error) {
	need, ok := tools[cond]
	if !ok {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	// missing is false (skip) on a laptop, an error in CI, where nothing
	// skips.
	missing := func(what string) (bool, error) {
		if strictTools {
			return false, fmt.Errorf("[%s]: %s, and CI does not skip", cond, what)
		}
		return false, nil
	}
	for _, prog := range need {
		if _, err := exec.LookPath(prog); err != nil {
			return missing(prog + " not found")
		}
	}
	files := map[string]string{"galera": sandbox.GaleraProvider, "softhsm": sandbox.Module}
	if f := files[cond]; f != "" {
		if _, err := os.Stat(f); err != nil {
			return missing(f + " not found")
		}
	}
	if cond == "failpoint" && !failpoint.Enabled {
		return missing("the test binary was built without -tags failpoint (make test builds it with)")
	}
	if cond == "root" && os.Getuid() != 0 {
		return missing("the test runs as uid " + strconv.Itoa(os.Getuid()))
	}
	return true, nil
}

// exitcode N prog args...: run prog, which must exit with status N; a
// process killed by signal S counts as 128+S, as a shell reports it.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N prog [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %q is not a number", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			got = 128 + int(ws.Signal())
		}
	case err != nil:
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// envsubst FILE...: expand $VAR and ${VAR} in each file, in place.
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst file...")
	}
	for _, f := range args {
		data := ts.ReadFile(f)
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(os.Expand(data, ts.Getenv)), 0o644))
	}
}

// In CI a missing tool is an error, never a skip.
func TestConditionStrictInCI(t *testing.T) {
	saved, savedStrict := tools["softhsm"], strictTools
	defer func() { tools["softhsm"], strictTools = saved, savedStrict }()
	tools["softhsm"] = []string{"no-such-tool-anywhere"}
	strictTools = true
	if ok, err := condition("softhsm"); ok || err == nil {
		t.Fatalf("CI: got %v, %v; want an error", ok, err)
	}
	strictTools = false
	if ok, err := condition("softhsm"); ok || err != nil {
		t.Fatalf("laptop: got %v, %v; want a skip", ok, err)
	}
	if _, err := condition("nonsense"); err == nil {
		t.Fatal("an unknown condition was accepted")
	}
}

// setvar NAME FILE: set $NAME to FILE's content, trimmed (FILE may be
// stdout, after a command).
func cmdSetvar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: setvar NAME FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

// scriptCommand is prog, found in the script's $PATH, to run with the
// script's environment (which wins over the test process's: the last of a
// duplicate key is the one used) in $WORK.
func scriptCommand(ts *testscript.TestScript, prog string, args ...string) *exec.Cmd {
	path := ""
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		if fi, err := os.Stat(filepath.Join(dir, prog)); err == nil && fi.Mode()&0o111 != 0 {
			path = filepath.Join(dir, prog)
			break
		}
	}
	if path == "" {
		ts.Fatalf("%s not found in $PATH", prog)
	}
	cmd := exec.Command(path, args...)
	cmd.Args[0] = prog
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = os.Environ()
	for _, k := range []string{"WORK", "PATH", "HOME", "TMPDIR", "SOFTHSM2_CONF", "ODS_KEYGUARD_CONFIG", "ODS_KEYGUARD_SYSLOG", "ODS_KEYGUARD_FAILPOINT", "CI", "XDG_STATE_HOME",
		"P11WRAP_MODULE", "P11WRAP_NSS_DIR", "P11WRAP_NSS_LABEL", "P11WRAP_LOG"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	return cmd
}
