package main

// Script commands about the enforcer: a sandboxed ods-enforcerd (SQLite or
// MySQL), its database, the hook links it runs, and zones it signs.

import (
	"crypto"
	"database/sql"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

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
		ts.Setenv("ODS_DAEMON", e.Daemon())
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
		// After each leap the enforcer runs what came due (hooks
		// included) before the query is read again: read any sooner, a
		// loaded enforcer's old state would have the next leap jump to
		// its next task, which may be a key's end of life a year on.
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
			ts.Check(e.WaitIdle(time.Now().Add(60 * time.Second)))
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
