package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/failpoint"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
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
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var lite []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !mysqlOnly.Match(data) {
			lite = append(lite, f)
		}
	}
	runScripts(t, "sqlite", lite)
}

// Script markers: run on both backends, or on MySQL only (a pair of hosts
// sharing a MySQL ledger).
var (
	bothBackends = regexp.MustCompile(`(?m)^# backends: sqlite mysql$`)
	mysqlOnly    = regexp.MustCompile(`(?m)^# backends: mysql$`)
)

func TestScriptsMySQL(t *testing.T) {
	sandbox.NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb", "apt-get", "dpkg-deb")
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var both []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bothBackends.Match(data) || mysqlOnly.Match(data) {
			both = append(both, f)
		}
	}
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
		},
	})
}

// setupScript points SOFTHSM2_CONF into $WORK, so that no script can touch
// a token of the machine, and the configuration at $WORK/keyguard.toml.
func setupScript(env *testscript.Env, backend string) error {
	conf, err := sandbox.SoftHSM(filepath.Join(env.WorkDir, "softhsm"))
	if err != nil {
		return err
	}
	env.Setenv("BACKEND", backend)
	env.Setenv("LEDGER", "")
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
		env.Setenv("LEDGER", fmt.Sprintf("[ledger]\nbackend = \"mysql\"\ndsn = %q\npassword_file = %q\n", db.DSN(), pw))
		env.Setenv("LEDGER_DSN", db.DSN())
		env.Setenv("LEDGER_USER", db.User)
		env.Setenv("LEDGER_DB", db.Name)
		env.Setenv("MARIADB_SOCKET", srv.Socket)
	}
	env.Setenv("SOFTHSM2_CONF", conf)
	env.Setenv("ODS_KEYGUARD_CONFIG", filepath.Join(env.WorkDir, "keyguard.toml"))
	env.Setenv("MODULE", sandbox.Module)
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

// softhsm conf [-dir D]: only write D/softhsm2.conf
// softhsm init [-dir D] [-pin P] LABEL: make a token (in $WORK/softhsm by default)
// softhsm delete [-dir D] LABEL ID: delete the key pair whose CKA_ID is ID
// softhsm keygen [-dir D] [-type T] LABEL ID: make a key pair (EC P-256 by
// default, or pkcs11-tool's T such as RSA:2048) with CKA_ID and label ID
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: softhsm conf|init|delete|keygen [-dir D] [-pin P] args...")
	}
	fs := flag.NewFlagSet("softhsm "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "softhsm", "SoftHSM folder")
	pin := fs.String("pin", sandbox.PIN, "user PIN")
	keyType := fs.String("type", "EC:prime256v1", "key type for keygen")
	if err := fs.Parse(args[1:]); err != nil {
		ts.Fatalf("softhsm: %v", err)
	}
	rest := fs.Args()
	conf, err := sandbox.SoftHSM(ts.MkAbs(*dir))
	ts.Check(err)
	switch {
	case args[0] == "conf" && len(rest) == 0:
	case args[0] == "init" && len(rest) == 1:
		ts.Check(sandbox.InitToken(conf, rest[0], *pin))
	case args[0] == "delete" && len(rest) == 2:
		ts.Check(sandbox.PKCS11Tool(conf, rest[0], *pin, "--delete-object", "--type", "privkey", "--id", rest[1]))
		sandbox.PKCS11Tool(conf, rest[0], *pin, "--delete-object", "--type", "pubkey", "--id", rest[1])
	case args[0] == "keygen" && len(rest) == 2:
		ts.Check(sandbox.PKCS11Tool(conf, rest[0], *pin, "--keypairgen", "--key-type", *keyType,
			"--id", rest[1], "--label", rest[1], "--usage-sign"))
	default:
		ts.Fatalf("usage: softhsm conf|init|delete|keygen [-dir D] [-pin P] args...")
	}
}

// enforcerSlot holds a script's running enforcer and, for the MySQL
// backend, the server its database goes on.
type enforcerSlot struct {
	e      *sandbox.Enforcer
	server *sandbox.MariaDB
}

// enforcer start [-require-backup] [-skip-public-key] [-manual-keygen]
//
//	[-ds-submit CMD] [-ds-retract CMD] [-set-time T] [-label L] [-signer]
//	[-notify CMD]
//
// starts ods-enforcerd in $WORK/ods (-signer: and ods-signerd beside it,
// both in a private mount namespace where $WORK/ods/run is
// /run/opendnssec; it needs root; -notify: the signer's NotifyCommand,
// "link" for the publish gate installed as ods-keyguard-publish) (kasp.xml from $WORK/kasp.xml if
// present) and sets $ODS_CONF, $ODS_SOCK and $ODS_DB.
// enforcer zone [-nowait] ZONE [POLICY]: add a zone and wait for its keys.
// enforcer signconf ZONE: wait for the zone's signconf (after -nowait).
// enforcer cli ARGS...: run ods-enforcer against the sandbox (its output
// without the "sock set to" line).
// enforcer leap SQL WANT: leap the enforcer's clock, task by task, until
// the query on $ODS_DB reads WANT (at most 30 leaps).
// enforcer keygen POLICY DURATION: key generate, and wait for the keys.
// enforcer settle: wait until the enforcer stops making keys.
// enforcer stop / enforcer restart.
func cmdEnforcer(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: enforcer start|zone|cli|stop|restart ...")
	}
	slot := ts.Value("enforcer").(*enforcerSlot)
	e := slot.e
	if args[0] != "start" && e == nil {
		ts.Fatalf("enforcer %s: not started", args[0])
	}
	switch args[0] {
	case "start":
		if e != nil {
			ts.Fatalf("enforcer already started")
		}
		fs := flag.NewFlagSet("enforcer start", flag.ContinueOnError)
		rb := fs.Bool("require-backup", false, "")
		spk := fs.Bool("skip-public-key", false, "")
		manual := fs.Bool("manual-keygen", false, "")
		submit := fs.String("ds-submit", "", "DelegationSignerSubmitCommand; \"link\": a link named ods-keyguard-ds-submit")
		retract := fs.String("ds-retract", "", "DelegationSignerRetractCommand; \"link\" as for -ds-submit")
		setTime := fs.String("set-time", "", "")
		label := fs.String("label", "ods-a", "")
		pin := fs.String("pin", sandbox.PIN, "the repository's PIN, as conf.xml holds it")
		signer := fs.Bool("signer", false, "ods-signerd beside it, both in a mount namespace of their own")
		notify := fs.String("notify", "", "the signer's NotifyCommand; \"link\": a link named ods-keyguard-publish, with %zone %zonefile")
		if err := fs.Parse(args[1:]); err != nil {
			ts.Fatalf("enforcer start: %v", err)
		}
		links := map[*string]string{
			submit:  hookLink(ts, "ods-keyguard-ds-submit"),
			retract: hookLink(ts, "ods-keyguard-ds-retract"),
		}
		for hook, link := range links {
			if *hook == "link" {
				*hook = link
			}
		}
		if *notify == "link" {
			*notify = hookLink(ts, "ods-keyguard-publish") + " %zone %zonefile"
		}
		o := sandbox.Options{
			// The hooks run in the daemon's environment: give them what the
			// scripts' forward commands use.
			Env: []string{
				"ODS_KEYGUARD_CONFIG=" + ts.Getenv("ODS_KEYGUARD_CONFIG"),
				"ODS_KEYGUARD_SYSLOG=" + ts.Getenv("ODS_KEYGUARD_SYSLOG"),
				"WORK=" + ts.Getenv("WORK"),
				"PARENT_PORT=" + ts.Getenv("PARENT_PORT"),
				"PARENT2_PORT=" + ts.Getenv("PARENT2_PORT"),
			},
			Module:       ts.Getenv("MODULE"),
			Dir:          ts.MkAbs("ods"),
			SoftHSMConf:  ts.Getenv("SOFTHSM2_CONF"),
			Repositories: []sandbox.Repo{{Name: "SoftHSM", Label: *label, PIN: *pin, RequireBackup: *rb, SkipPublicKey: *spk}},
			DSSubmit:     *submit, DSRetract: *retract, ManualKeyGen: *manual, SetTime: *setTime,
			Signer: *signer, Notify: *notify,
		}
		o.Env = append(o.Env, wrapperEnv(ts)...)
		if kasp, err := os.ReadFile(ts.MkAbs("kasp.xml")); err == nil {
			o.Kasp = string(kasp)
		}
		if slot.server != nil {
			db, err := slot.server.NewDatabase("kasp")
			ts.Check(err)
			ts.Defer(func() { db.Drop() })
			o.MySQL = db
		}
		e, err := sandbox.Start(o)
		ts.Check(err)
		slot.e = e
		ts.Defer(func() { e.Close() })
		ts.Setenv("ODS_CONF", e.Conf)
		ts.Setenv("ODS_SOCK", e.Socket)
		ts.Setenv("ODS_DB", e.DB)
	case "zone":
		nowait := len(args) > 1 && args[1] == "-nowait"
		if nowait {
			args = append(args[:1], args[2:]...)
		}
		if len(args) < 2 || len(args) > 3 {
			ts.Fatalf("usage: enforcer zone [-nowait] ZONE [POLICY]")
		}
		policy := "test"
		if len(args) == 3 {
			policy = args[2]
		}
		if nowait {
			ts.Check(e.AddZoneNoWait(args[1], policy))
		} else {
			ts.Check(e.AddZone(args[1], policy))
		}
	case "signconf":
		if len(args) != 2 {
			ts.Fatalf("usage: enforcer signconf ZONE")
		}
		ts.Check(e.WaitSignconf(args[1]))
	case "cli":
		out, err := e.CLI(args[1:]...)
		out = strings.TrimPrefix(out, "sock set to "+e.Socket+"\n")
		ts.Stdout().Write([]byte(out))
		if err != nil && !neg {
			ts.Fatalf("%v", err)
		}
		if err == nil && neg {
			ts.Fatalf("ods-enforcer %s succeeded unexpectedly", strings.Join(args[1:], " "))
		}
	case "leap":
		// enforcer leap SQL WANT: time leap until the query reads WANT.
		if len(args) != 3 {
			ts.Fatalf("usage: enforcer leap SQL WANT")
		}
		var got string
		for i := 0; i < 30; i++ {
			var err error
			if got, err = queryDB(ts, args[1]); err != nil {
				ts.Fatalf("enforcer leap: %v", err)
			}
			if got == args[2] {
				return
			}
			_, err = e.CLI("time", "leap")
			ts.Check(err)
			time.Sleep(300 * time.Millisecond)
		}
		ts.Fatalf("enforcer leap: %q reads %q after 30 leaps, want %q", args[1], got, args[2])
	case "keygen":
		if len(args) != 3 {
			ts.Fatalf("usage: enforcer keygen POLICY DURATION")
		}
		ts.Check(e.GenerateKeys(args[1], args[2]))
	case "settle":
		ts.Check(e.WaitIdle(time.Now().Add(60 * time.Second)))
	case "stop":
		ts.Check(e.Stop())
	case "restart":
		ts.Check(e.Restart())
	default:
		ts.Fatalf("usage: enforcer start|zone|cli|stop|restart ...")
	}
}

// dbvar NAME SQL: set $NAME to the query's first column on $ODS_DB (rows
// joined by commas).
func cmdDBVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: dbvar NAME SQL")
	}
	got, err := queryDB(ts, args[1])
	ts.Check(err)
	ts.Setenv(args[0], got)
}

func queryDB(ts *testscript.TestScript, query string) (string, error) {
	var db *sql.DB
	var err error
	if e := ts.Value("enforcer").(*enforcerSlot).e; e != nil && e.MySQL != nil {
		db, err = mysqlx.Open(mysqlx.Server{Host: "127.0.0.1", Port: e.MySQL.Server.Port, User: e.MySQL.User,
			Password: secret.Value(e.MySQL.Password), Database: e.MySQL.Name})
	} else {
		db, err = sql.Open("sqlite", "file:"+ts.Getenv("ODS_DB")+"?mode=ro&_pragma=busy_timeout(5000)")
	}
	if err != nil {
		return "", err
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var vals []string
	for rows.Next() {
		var v sql.NullString
		if err := rows.Scan(&v); err != nil {
			return "", err
		}
		vals = append(vals, v.String)
	}
	return strings.Join(vals, ","), rows.Err()
}

// hookLink makes $WORK/hooks/NAME (whether or not conf.xml names it), a link to the ods-keyguard binary as
// make install makes it, and returns its path.
func hookLink(ts *testscript.TestScript, name string) string {
	bin, err := exec.LookPath("ods-keyguard")
	ts.Check(err)
	dir := ts.MkAbs("hooks")
	ts.Check(os.MkdirAll(dir, 0o755))
	link := filepath.Join(dir, name)
	ts.Check(os.Symlink(bin, link))
	return link
}

// logged PATTERN: wait (up to 10 s) until a line of $WORK/syslog.txt
// matches PATTERN, as grep would: the syslogd command writes what it
// receives a moment after the sender is gone. ! logged PATTERN: no line
// matches, after that moment.
func cmdLogged(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: logged PATTERN")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	wait := 10 * time.Second
	if neg {
		wait = 300 * time.Millisecond
	}
	var data []byte
	for end := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		data, _ = os.ReadFile(ts.MkAbs("syslog.txt"))
		if re.Match(data) || time.Now().After(end) {
			break
		}
	}
	switch found := re.Match(data); {
	case found && neg:
		ts.Fatalf("syslog.txt has a line matching %q", args[0])
	case !found && !neg:
		ts.Logf("[syslog.txt]\n%s", data)
		ts.Fatalf("no line of syslog.txt matches %q", args[0])
	}
}

// syslogd: listen on a unix datagram socket, set $ODS_KEYGUARD_SYSLOG to it,
// and append every message received to $WORK/syslog.txt. syslogd -stuck: a
// logger that reads nothing, its queue full before anyone logs.
func cmdSyslogd(ts *testscript.TestScript, neg bool, args []string) {
	stuck := len(args) == 1 && args[0] == "-stuck"
	if neg || (len(args) != 0 && !stuck) {
		ts.Fatalf("usage: syslogd [-stuck]")
	}
	dir, err := os.MkdirTemp("", "slog") // a socket path holds 107 bytes at most
	ts.Check(err)
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	ts.Check(err)
	if stuck {
		// A logger that reads nothing, its queue already full.
		w, err := net.Dial("unixgram", sock)
		ts.Check(err)
		for {
			w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := w.Write([]byte("<30>filler")); err != nil {
				break
			}
		}
		ts.Defer(func() {
			w.Close()
			conn.Close()
			os.RemoveAll(dir)
		})
		ts.Setenv("ODS_KEYGUARD_SYSLOG", sock)
		return
	}
	out, err := os.OpenFile(ts.MkAbs("syslog.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	ts.Check(err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*1024)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := strings.TrimRight(string(buf[:n]), "\n")
			out.WriteString(msg + "\n")
		}
	}()
	ts.Defer(func() {
		conn.Close()
		<-done
		out.Close()
		os.RemoveAll(dir)
	})
	ts.Setenv("ODS_KEYGUARD_SYSLOG", sock)
}

// signzone ZONE FILE DURATION|@TIME: write FILE, a zone signed for real
// (ECDSA P-256) whose earliest RRSIG expires DURATION (ISO 8601) from now,
// or at TIME (RFC 3339, past or far ahead); the others a day later.
func cmdSignZone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: signzone ZONE FILE DURATION|@RFC3339")
	}
	var d time.Duration
	if at, ok := strings.CutPrefix(args[2], "@"); ok {
		t, err := time.Parse(time.RFC3339, at)
		ts.Check(err)
		d = time.Until(t)
	} else {
		var err error
		d, err = human.ParseISODuration(args[2])
		ts.Check(err)
	}
	origin := dns.Fqdn(args[0])
	key := &dns.DNSKEY{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 60},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := key.Generate(256)
	ts.Check(err)
	soa, _ := dns.NewRR(origin + " 60 IN SOA ns1." + origin + " hostmaster." + origin + " 1 60 60 600 60")
	ns, _ := dns.NewRR(origin + " 60 IN NS ns1." + origin)
	a, _ := dns.NewRR("ns1." + origin + " 60 IN A 192.0.2.1")
	now := time.Now()
	var out strings.Builder
	for i, set := range [][]dns.RR{{soa}, {ns}, {a}, {key}} {
		exp := now.Add(d)
		if i > 0 {
			exp = exp.Add(24 * time.Hour)
		}
		inception := now.Add(-time.Hour)
		if exp.Before(inception) { // a long expired signature was made before it expired
			inception = exp.Add(-14 * 24 * time.Hour)
		}
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: set[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 60},
			KeyTag: key.KeyTag(), SignerName: origin, Algorithm: key.Algorithm,
			Inception: uint32(inception.Unix()), Expiration: uint32(exp.Unix())}
		ts.Check(sig.Sign(priv.(crypto.Signer), set))
		for _, rr := range set {
			out.WriteString(rr.String() + "\n")
		}
		out.WriteString(sig.String() + "\n")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out.String()), 0o644))
}

// waitdb SQL WANT: poll $ODS_DB until the query's first column reads WANT
// (rows joined by commas), for up to 60 seconds.
func cmdWaitDB(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitdb SQL WANT")
	}
	var got string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if got, err = queryDB(ts, args[0]); err != nil {
			ts.Fatalf("waitdb: %v", err)
		}
		if got == args[1] {
			return
		}
	}
	ts.Fatalf("waitdb: %q reads %q after 60s, want %q", args[0], got, args[1])
}

// cpdir SRC DST: copy a folder's contents into DST, made if need be (a SoftHSMv2 backup is a copy of its tokens).
func cmdCpdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cpdir SRC DST")
	}
	ts.Check(os.MkdirAll(ts.MkAbs(args[1]), 0o700))
	out, err := exec.Command("cp", "-a", ts.MkAbs(args[0])+"/.", ts.MkAbs(args[1])).CombinedOutput()
	if err != nil {
		ts.Fatalf("cpdir: %v: %s", err, out)
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

// noproc VAR=VALUE: no process runs with VAR=VALUE in its environment (a
// reader or forward command that should have been killed and reaped).
func cmdNoProc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: noproc VAR=VALUE")
	}
	want := []byte(args[0] + "\x00")
	for i := 0; ; i++ {
		var found []string
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			env, err := os.ReadFile(filepath.Join(d, "environ"))
			stat, _ := os.ReadFile(filepath.Join(d, "stat"))
			if err == nil && bytes.Contains(env, want) && !bytes.Contains(stat, []byte(") Z ")) {
				found = append(found, filepath.Base(d))
			}
		}
		if len(found) == 0 {
			return
		}
		if i == 3 {
			ts.Fatalf("processes still running with %s: %v", args[0], found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parentSlot holds a script's parent name servers.
type parentSlot struct{ ps []*sandbox.Parent }

// parent start [-servers N] [-signed] ZONE CHILD...: sandboxed BIND 9 named
// servers (one unless -servers), each serving ZONE with CHILD delegated, on
// ports of their own, updatable from 127.0.0.1; sets $PARENT (ADDR:PORT)
// and $PARENT_PORT of the first, and $PARENT2, $PARENT2_PORT... of the
// others. -signed: BIND signs ZONE (all servers with one CSK) and re-signs
// it after every update; $PARENT_ANCHOR is a file holding its trust anchor
// (trust-anchors { "ZONE." static-key 257 3 13 "..."; };), for delv -a.
// -as NAME (one server): another server of the zone, not the parent that
// parent ds and validate read (a spoofing server, say): sets $NAME and
// $NAME_PORT.
// The servers are independent primaries: an update that reaches only one
// is a parent server that lags. Start them before the enforcer, whose
// hooks get $PARENT_PORT and $PARENT2_PORT.
// parent ds CHILD [N]: print CHILD's DS RRset as server N (default 1)
// serves it, one record a line, sorted; "no DS" when it has none.
func cmdParent(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: parent start [-servers N] [-signed] [-as NAME] ZONE CHILD... | parent ds CHILD [N]"
	if neg || len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	slot := ts.Value("parent").(*parentSlot)
	switch args[0] {
	case "start":
		fs := flag.NewFlagSet("parent start", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("servers", 1, "")
		signed := fs.Bool("signed", false, "")
		as := fs.String("as", "PARENT", "")
		if fs.Parse(args[1:]) != nil || fs.NArg() < 1 || (*as != "PARENT" && *n != 1) {
			ts.Fatalf("%s", usage)
		}
		args = fs.Args()
		keys := ""
		for i := 1; i <= *n; i++ {
			dir, suffix := strings.ToLower(*as), ""
			if i > 1 {
				dir, suffix = dir+strconv.Itoa(i), strconv.Itoa(i)
			}
			p, err := sandbox.StartParent(sandbox.ParentOptions{Dir: ts.MkAbs(dir), Zone: args[0], Children: args[1:], Signed: *signed, Keys: keys})
			ts.Check(err)
			ts.Defer(p.Stop)
			ts.Setenv(*as+suffix, p.Addr())
			ts.Setenv(*as+suffix+"_PORT", strconv.Itoa(p.Port))
			if *as != "PARENT" {
				// Another server of the zone (a spoofing one): not the
				// parent that parent ds and validate read.
				continue
			}
			slot.ps = append(slot.ps, p)
			if *signed && i == 1 {
				// The others sign with the same key: one zone, one anchor.
				keys = filepath.Join(p.Dir, "keys")
				anchor := ts.MkAbs("parent-anchor.conf")
				ts.Check(p.AnchorFile(anchor))
				ts.Setenv("PARENT_ANCHOR", anchor)
			}
		}
	case "ds":
		i := 1
		if len(args) == 3 {
			var err error
			i, err = strconv.Atoi(args[2])
			ts.Check(err)
		}
		if i < 1 || i > len(slot.ps) {
			ts.Fatalf("parent ds: no parent server %d started", i)
		}
		ds, err := slot.ps[i-1].DS(args[1])
		ts.Check(err)
		sort.Strings(ds)
		if len(ds) == 0 {
			fmt.Fprintln(ts.Stdout(), "no DS")
		}
		for _, d := range ds {
			fmt.Fprintln(ts.Stdout(), d)
		}
	default:
		ts.Fatalf("%s", usage)
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

// tmpfs DIR SIZE: mount a tmpfs of SIZE (such as 64k) on DIR, unmounted at
// the end: a disk that fills up for real. It needs root, which CI is.
func cmdTmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: tmpfs DIR SIZE")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+args[1], "tmpfs", dir).CombinedOutput(); err != nil {
		ts.Fatalf("tmpfs: mount (needs root): %v: %s", err, out)
	}
	ts.Defer(func() { exec.Command("umount", "-l", dir).Run() })
}

// ageledger DIR DURATION: move every time in the ceremony files of state_dir
// DIR back by DURATION (ISO 8601), checksums recomputed: a ceremony held a
// week ago, without waiting a week. A fixture, as check_pool_gap's edit of
// kasp.db is; ods-keyguard itself never does this.
func cmdAgeLedger(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: ageledger STATEDIR DURATION")
	}
	d, err := human.ParseISODuration(args[1])
	ts.Check(err)
	for _, name := range []string{"history.json", "ceremonies-open.json"} {
		path := filepath.Join(ts.MkAbs(args[0]), name)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		ts.Check(err)
		var env struct {
			Format string          `json:"format"`
			SHA256 string          `json:"sha256"`
			Data   json.RawMessage `json:"data"`
		}
		ts.Check(json.Unmarshal(b, &env))
		var data any
		ts.Check(json.Unmarshal(env.Data, &data))
		data = shiftTimes(data, d)
		raw, err := json.Marshal(data)
		ts.Check(err)
		sum := sha256.Sum256(raw)
		env.Data, env.SHA256 = raw, hex.EncodeToString(sum[:])
		out, err := json.MarshalIndent(env, "", " ")
		ts.Check(err)
		ts.Check(os.WriteFile(path, append(out, '\n'), 0o640))
	}
}

// shiftTimes moves every RFC 3339 time in a decoded JSON value back by d.
func shiftTimes(v any, d time.Duration) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = shiftTimes(e, d)
		}
	case []any:
		for i, e := range x {
			x[i] = shiftTimes(e, d)
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil && !t.IsZero() && t.Year() > 1 {
			return t.Add(-d).Format(time.RFC3339Nano)
		}
	}
	return v
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

// killat MILLIS prog args...: run prog and kill it with SIGKILL after MILLIS
// milliseconds if it is still running; its exit status does not matter. A
// crash at a moment nobody chose.
func cmdKillAt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: killat MILLIS prog [args...]")
	}
	ms, err := strconv.Atoi(args[0])
	ts.Check(err)
	cmd := scriptCommand(ts, args[1], args[2:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ts.Check(cmd.Start())
	timer := time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { cmd.Process.Kill() })
	cmd.Wait()
	timer.Stop()
	fmt.Fprint(ts.Stdout(), out.String())
}

// runas UID:GID[:GROUP,...] N prog args...: run prog as that user, with
// those supplementary groups (numbers: no account is made), which must exit
// with status N. ods-keyguard is run from a copy in $WORK/bin that any user
// may execute. Needs root.
func cmdRunAs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: runas UID:GID[:GROUP,...] N prog [args...]")
	}
	ids := strings.Split(args[0], ":")
	num := func(s string) uint32 {
		n, err := strconv.ParseUint(s, 10, 32)
		ts.Check(err)
		return uint32(n)
	}
	cred := &syscall.Credential{Uid: num(ids[0]), Gid: num(ids[1])}
	if len(ids) > 2 {
		for _, g := range strings.Split(ids[2], ",") {
			cred.Groups = append(cred.Groups, num(g))
		}
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	bin := installSelf(ts)
	cmd := scriptCommand(ts, args[2], args[3:]...)
	cmd.Env = append(cmd.Env, "PATH="+bin+":"+ts.Getenv("PATH"), "HOME=/")
	if args[2] == "ods-keyguard" || args[2] == "check_ods_keyguard" {
		cmd.Path = filepath.Join(bin, args[2])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	ts.Stdout().Write(stdout.Bytes())
	ts.Stderr().Write(stderr.Bytes())
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("runas: %v", err)
	}
	if got != want {
		ts.Fatalf("%s as %s exited %d, want %d", args[2], args[0], got, want)
	}
}

// installSelf copies the test binary to $WORK/bin as ods-keyguard, with
// check_ods_keyguard linked to it, where any user may run it, and returns
// the folder.
func installSelf(ts *testscript.TestScript) string {
	bin := ts.MkAbs("bin")
	if _, err := os.Stat(filepath.Join(bin, "ods-keyguard")); err == nil {
		return bin
	}
	self, err := os.Executable()
	ts.Check(err)
	data, err := os.ReadFile(self)
	ts.Check(err)
	ts.Check(os.MkdirAll(bin, 0o755))
	ts.Check(os.WriteFile(filepath.Join(bin, "ods-keyguard"), data, 0o755))
	ts.Check(os.Symlink("ods-keyguard", filepath.Join(bin, "check_ods_keyguard")))
	for dir := ts.Getenv("WORK"); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o001 == 0 {
			ts.Check(os.Chmod(dir, fi.Mode().Perm()|0o011))
		}
	}
	return bin
}

// nagios CHECK_COMMAND: run CHECK_COMMAND (check_ods_keyguard, or
// check_ods_keyguard_spare!W!C), as packaging/nagios-ods-keyguard.cfg
// defines it, as a service check of a sandboxed Nagios Core; print what
// Nagios recorded: state=N, output=..., perfdata=..., and the further
// lines after long:.
func cmdNagios(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: nagios CHECK_COMMAND")
	}
	bin := installSelf(ts)
	var env []string
	for _, k := range []string{"ODS_KEYGUARD_CONFIG", "SOFTHSM2_CONF"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	env = append(env, "PATH="+bin+":"+ts.Getenv("PATH"), "HOME=/")
	commands, err := filepath.Abs("packaging/nagios-ods-keyguard.cfg")
	ts.Check(err)
	r, err := sandbox.RunNagios(ts.MkAbs("nagios"), commands, filepath.Join(bin, "check_ods_keyguard"), args[0], env, 60*time.Second)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "state=%d\noutput=%s\nperfdata=%s\nlong:\n%s\n", r.State, r.Output, r.Perfdata, r.Long)
}

// forgeds FILE KIND ACTION LINEFILE [LOCATOR]: write a DS spool file in the
// spool's own format (checksum and all) holding one event for the DNSKEY
// in LINEFILE: what someone who can write the spool could plant there.
func cmdForgeDS(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 || len(args) > 5 {
		ts.Fatalf("usage: forgeds FILE KIND ACTION LINEFILE [LOCATOR]")
	}
	line := strings.SplitN(ts.ReadFile(args[3]), "\n", 2)[0] + "\n"
	rr, err := dns.NewRR(strings.SplitN(line, ";", 2)[0])
	ts.Check(err)
	k, ok := rr.(*dns.DNSKEY)
	if !ok {
		ts.Fatalf("forgeds: %s holds no DNSKEY", args[3])
	}
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	ts.Check(err)
	fp := sha256.Sum256(pub)
	ev := ledger.DSEvent{ID: "forged-" + filepath.Base(args[0]), Time: time.Now().UTC(), Kind: args[1], Action: args[2],
		Zone: strings.TrimSuffix(k.Hdr.Name, "."), KeyTag: int(k.KeyTag()), Algorithm: int(k.Algorithm),
		Fingerprint: hex.EncodeToString(fp[:]), Line: line, Reason: "its successor's DS is not at the parent yet", By: "hook"}
	if len(args) == 5 {
		ev.Locator = args[4]
	}
	data, err := json.Marshal([]ledger.DSEvent{ev})
	ts.Check(err)
	sum := sha256.Sum256(data)
	doc, err := json.Marshal(map[string]any{"format": "ods-keyguard/ds-spool/1", "sha256": hex.EncodeToString(sum[:]), "data": json.RawMessage(data)})
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), append(doc, '\n'), 0o640))
}

// gendnskeys N ZONE FILE: write N DNSKEY lines (flags 257, algorithm 13) of
// random public keys for ZONE, in the enforcer's form: keys the enforcer
// does not have, for a flood of requests.
func cmdGenDNSKEYs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: gendnskeys N ZONE FILE")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	var b strings.Builder
	pub := make([]byte, 64)
	for i := 0; i < n; i++ {
		_, err := rand.Read(pub)
		ts.Check(err)
		fmt.Fprintf(&b, "%s. 3600 IN DNSKEY 257 3 13 %s \n", args[1], base64.StdEncoding.EncodeToString(pub))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(b.String()), 0o644))
}

// blackhole: a TCP and UDP server on 127.0.0.1 that takes connections and
// queries and never answers (a DNS server that hangs), as a server stopped
// with SIGSTOP does (the kernel still accepts);
// $BLACKHOLE_PORT names its port. Closed at the end of the script.
func cmdBlackhole(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: blackhole")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ts.Defer(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	// The same port over UDP: a DNS server that never answers takes
	// the query and says nothing.
	port := ln.Addr().(*net.TCPAddr).Port
	if u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, _, err := u.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		ts.Defer(func() { u.Close() })
	} else {
		ts.Fatalf("blackhole: udp port %d: %v", port, err)
	}
	ts.Setenv("BLACKHOLE_PORT", strconv.Itoa(port))
}

// galeraSlot holds a script's Galera cluster.
type galeraSlot struct{ g *sandbox.Galera }

// galera start: a 3-node MariaDB Galera cluster for this script, a ledger
// database on it (made on node 1, with ledger init), and $LEDGER_1,
// $LEDGER_2, $LEDGER_3: the [ledger] section of a host that writes to that
// node; $GALERA_SOCKET_N each node's socket (root).
// galera kill N: kill node N as a crash would, and wait until the others
// go on as a cluster without it.
func cmdGalera(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: galera start | galera kill N")
	}
	switch args[0] {
	case "start":
		dir, err := os.MkdirTemp("", "keyguard-galera")
		ts.Check(err)
		g, err := sandbox.StartGalera(dir, 3)
		if err != nil {
			os.RemoveAll(dir)
			ts.Fatalf("galera start: %v", err)
		}
		ts.Defer(func() { g.Stop(); os.RemoveAll(dir) })
		ts.Value("galera").(*galeraSlot).g = g
		db, err := g.Nodes[0].NewDatabase("keyguard")
		ts.Check(err)
		pw := ts.MkAbs("ledger.pw")
		ts.Check(os.WriteFile(pw, []byte(db.Password+"\n"), 0o600))
		srv := mysqlx.Server{Host: "127.0.0.1", Port: g.Nodes[0].Port, User: db.User, Password: secret.Value(db.Password), Database: db.Name}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		l, err := ledger.New(ctx, ledger.Options{MySQL: &srv, Create: true})
		ts.Check(err)
		err = l.Init(ctx)
		l.Close()
		ts.Check(err)
		for i, n := range g.Nodes {
			ts.Setenv(fmt.Sprintf("LEDGER_%d", i+1), fmt.Sprintf("[ledger]\nbackend = \"mysql\"\ndsn = %q\npassword_file = %q\n",
				fmt.Sprintf("%s@tcp(127.0.0.1:%d)/%s", db.User, n.Port, db.Name), pw))
			ts.Setenv(fmt.Sprintf("GALERA_SOCKET_%d", i+1), n.Socket)
		}
		ts.Setenv("LEDGER_DB", db.Name)
	case "kill":
		if len(args) != 2 {
			ts.Fatalf("usage: galera kill N")
		}
		g := ts.Value("galera").(*galeraSlot).g
		if g == nil {
			ts.Fatalf("galera kill: no cluster (galera start first)")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		ts.Check(g.Kill(n))
		ts.Check(g.WaitSize(len(g.Nodes)-1, 60*time.Second))
	default:
		ts.Fatalf("usage: galera start | galera kill N")
	}
}
