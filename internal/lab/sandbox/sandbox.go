// Package sandbox runs a real SoftHSMv2 token and a real ods-enforcerd in
// one folder, with nothing under /etc or /var/lib/opendnssec: for the tests
// and the demo.
package sandbox

import (
	"bytes"
	"database/sql"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// Defaults of a sandbox.
const (
	Module = "/usr/lib/softhsm/libsofthsm2.so"
	PIN    = "1234"
	SOPIN  = "5678"
)

// SoftHSM writes dir/softhsm2.conf, whose tokens live in dir/tokens, and
// returns the file's path: the value for SOFTHSM2_CONF.
func SoftHSM(dir string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s/\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	return conf, os.WriteFile(conf, []byte(text), 0o600)
}

// InitToken makes a token labelled label in the SoftHSM of conf.
func InitToken(conf, label, pin string) error {
	return run(conf, "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SOPIN)
}

// PKCS11Tool runs pkcs11-tool on the token labelled label.
func PKCS11Tool(conf, label, pin string, args ...string) error {
	return run(conf, "pkcs11-tool", append([]string{"--module", Module, "--token-label", label, "--pin", pin}, args...)...)
}

func run(conf, prog string, args ...string) error {
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", prog, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Repo is one <Repository> of the sandbox's conf.xml.
type Repo struct {
	Name, Label, PIN             string
	RequireBackup, SkipPublicKey bool
}

// Options shape the sandboxed enforcer.
type Options struct {
	Dir          string // everything lives here
	Module       string // the repositories' PKCS#11 module; default Module
	SoftHSMConf  string // SOFTHSM2_CONF for the enforcer
	Repositories []Repo // default: SoftHSM on token "ods-a"
	Kasp         string // kasp.xml contents; default DefaultKasp
	DSSubmit     string // <DelegationSignerSubmitCommand>
	DSRetract    string
	ManualKeyGen bool
	SetTime      string   // ods-enforcerd --set-time
	Env          []string // more environment for the daemon (and so its hooks)
	// MySQL keeps the enforcer's database there instead of kasp.db, run by
	// the ods-enforcerd of opendnssec-enforcer-mysql (MySQLEnforcerd).
	MySQL *Database
	// Signer runs ods-signerd beside the enforcer, both in a mount
	// namespace of their own where Dir/run is /run/opendnssec (signer.go).
	Signer bool
	// Notify is the signer's <NotifyCommand> ("" for none), with %zone
	// and %zonefile as the signer expands them.
	Notify string
}

// Enforcer is a running sandboxed ods-enforcerd.
type Enforcer struct {
	Dir, Conf, Socket, DB, Log string
	MySQL                      *Database // the database, when not DB
	manualKeyGen               bool
	daemon                     string
	sockDir                    string
	cmd                        *exec.Cmd
	done                       chan error
	env                        []string
	// With a signer (Options.Signer): the namespace, the signer daemon,
	// and the signer's DNS listener port (unused, but it must not clash).
	ns         *namespace
	signer     *exec.Cmd
	signerDone chan error
	signerPort int
	touched    map[string]time.Time // what Sign moved a file's mtime to
}

// DefaultKasp has one policy, "test": ECDSA P-256 keys with long lifetimes
// and short TTLs, so a test sees few keys and quick transitions.
const DefaultKasp = `<?xml version="1.0" encoding="UTF-8"?>
<KASP>
 <Policy name="test">
  <Description>ods-keyguard sandbox</Description>
  <Signatures>
   <Resign>PT2H</Resign><Refresh>P3D</Refresh>
   <Validity><Default>P14D</Default><Denial>P14D</Denial></Validity>
   <Jitter>PT12H</Jitter><InceptionOffset>PT3600S</InceptionOffset><MaxZoneTTL>PT60S</MaxZoneTTL>
  </Signatures>
  <Denial><NSEC/></Denial>
  <Keys>
   <TTL>PT60S</TTL><RetireSafety>PT60S</RetireSafety><PublishSafety>PT60S</PublishSafety><Purge>P14D</Purge>
   <KSK><Algorithm length="256">13</Algorithm><Lifetime>P2Y</Lifetime><Repository>SoftHSM</Repository></KSK>
   <ZSK><Algorithm length="256">13</Algorithm><Lifetime>P1Y</Lifetime><Repository>SoftHSM</Repository></ZSK>
  </Keys>
  <Zone><PropagationDelay>PT60S</PropagationDelay><SOA><TTL>PT60S</TTL><Minimum>PT60S</Minimum><Serial>unixtime</Serial></SOA></Zone>
  <Parent><PropagationDelay>PT60S</PropagationDelay><DS><TTL>PT60S</TTL></DS><SOA><TTL>PT60S</TTL><Minimum>PT60S</Minimum></SOA></Parent>
 </Policy>
</KASP>
`

var confTemplate = template.Must(template.New("conf").Funcs(template.FuncMap{"xml": xmlEscape}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
 <RepositoryList>
{{- range .Repositories}}
  <Repository name="{{.Name}}">
   <Module>{{$.Module}}</Module>
   <TokenLabel>{{.Label}}</TokenLabel>
   <PIN>{{xml .PIN}}</PIN>
   {{- if .RequireBackup}}
   <RequireBackup/>{{end}}
   {{- if .SkipPublicKey}}
   <SkipPublicKey/>{{end}}
  </Repository>
{{- end}}
 </RepositoryList>
 <Common>
  <Logging><Verbosity>3</Verbosity></Logging>
  <PolicyFile>{{.Dir}}/kasp.xml</PolicyFile>
  <ZoneListFile>{{.Dir}}/zonelist.xml</ZoneListFile>
 </Common>
 <Enforcer>
  {{- if .MySQL}}
  <Datastore><MySQL><Host Port="{{.MySQL.Server.Port}}">127.0.0.1</Host><Database>{{.MySQL.Name}}</Database><Username>{{.MySQL.User}}</Username><Password>{{xml .MySQL.Password}}</Password></MySQL></Datastore>
  {{- else}}
  <Datastore><SQLite>{{.Dir}}/kasp.db</SQLite></Datastore>{{end}}
  {{- if .ManualKeyGen}}
  <ManualKeyGeneration/>{{else}}
  <AutomaticKeyGenerationPeriod>P1Y</AutomaticKeyGenerationPeriod>{{end}}
  <WorkingDirectory>{{.Dir}}/enforcer</WorkingDirectory>
  <SocketFile>{{.Socket}}</SocketFile>
  <PidFile>{{.Dir}}/enforcer.pid</PidFile>
  {{- if .DSSubmit}}
  <DelegationSignerSubmitCommand>{{.DSSubmit}}</DelegationSignerSubmitCommand>{{end}}
  {{- if .DSRetract}}
  <DelegationSignerRetractCommand>{{.DSRetract}}</DelegationSignerRetractCommand>{{end}}
 </Enforcer>
 <Signer><WorkingDirectory>{{.Dir}}/signer</WorkingDirectory>
  {{- if .SignerPort}}
  <Listener><Interface><Address>127.0.0.1</Address><Port>{{.SignerPort}}</Port></Interface></Listener>{{end}}
  {{- if .Notify}}
  <NotifyCommand>{{xml .Notify}}</NotifyCommand>{{end}}
 </Signer>
</Configuration>
`))

// xmlEscape escapes s for XML text: a PIN may hold & or <.
func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Configure writes conf.xml, kasp.xml, the zone list and an empty kasp.db
// into o.Dir, without starting anything.
func Configure(o Options) (*Enforcer, error) {
	if len(o.Repositories) == 0 {
		o.Repositories = []Repo{{Name: "SoftHSM", Label: "ods-a", PIN: PIN}}
	}
	if o.Kasp == "" {
		o.Kasp = DefaultKasp
	}
	for _, d := range []string{"enforcer", "signer", "signconf", "unsigned", "signed"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// A unix socket path holds at most 107 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "ods")
	if err != nil {
		return nil, err
	}
	e := &Enforcer{
		Dir: o.Dir, Conf: filepath.Join(o.Dir, "conf.xml"), Socket: filepath.Join(sockDir, "enforcer.sock"),
		DB: filepath.Join(o.Dir, "kasp.db"), Log: filepath.Join(o.Dir, "enforcerd.log"), sockDir: sockDir,
		env:          append(append(os.Environ(), "SOFTHSM2_CONF="+o.SoftHSMConf), o.Env...),
		daemon:       "ods-enforcerd",
		manualKeyGen: o.ManualKeyGen,
	}
	if o.MySQL != nil {
		daemon, err := MySQLEnforcerd()
		if err != nil {
			return nil, err
		}
		e.daemon, e.DB, e.MySQL = daemon, "", o.MySQL
	}
	module := Module
	if o.Module != "" {
		module = o.Module
	}
	if o.Signer {
		if e.signerPort, err = freePort(); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(o.Dir, "run"), 0o755); err != nil {
			return nil, err
		}
	}
	var conf bytes.Buffer
	if err := confTemplate.Execute(&conf, struct {
		Options
		Module, Socket string
		SignerPort     int
	}{o, module, e.Socket, e.signerPort}); err != nil {
		return nil, err
	}
	files := map[string]string{
		"conf.xml":     conf.String(),
		"kasp.xml":     o.Kasp,
		"zonelist.xml": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ZoneList>\n</ZoneList>\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(o.Dir, name), []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	// ods-enforcer-db-setup reads only /etc/opendnssec/conf.xml: make the
	// database from the shipped schema instead.
	if o.MySQL != nil {
		if err := o.MySQL.LoadEnforcerSchema(); err != nil {
			return nil, err
		}
		if _, err := o.MySQL.Query("INSERT INTO databaseVersion (version) VALUES (1);"); err != nil {
			return nil, err
		}
		return e, nil
	}
	os.Remove(e.DB)
	schema, err := os.ReadFile("/usr/share/opendnssec/schema.sqlite")
	if err != nil {
		return nil, fmt.Errorf("enforcer schema: %w", err)
	}
	cmd := exec.Command("sqlite3", e.DB)
	cmd.Stdin = strings.NewReader(string(schema) + "\nINSERT INTO databaseVersion (version) VALUES (1);\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sqlite3 %s: %v: %s", e.DB, err, out)
	}
	return e, nil
}

// Start configures and starts the enforcer, waits for its socket and imports
// the policies.
func Start(o Options) (*Enforcer, error) {
	e, err := Configure(o)
	if err != nil {
		return nil, err
	}
	if o.Signer {
		if e.ns, err = newNamespace(filepath.Join(o.Dir, "run"), filepath.Join(o.Dir, "namespace.log")); err != nil {
			return nil, err
		}
	}
	if err := e.start(o.SetTime); err != nil {
		e.ns.close()
		return nil, err
	}
	if o.Signer {
		if err := e.startSigner(); err != nil {
			e.Close()
			return nil, err
		}
	}
	if _, err := e.CLI("policy", "import"); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Daemon is the ods-enforcerd program the sandbox runs (the MySQL build
// for a MySQL datastore), for a script that starts one by hand.
func (e *Enforcer) Daemon() string { return e.daemon }

// Restart starts the daemon again on the same files, after Stop.
func (e *Enforcer) Restart() error {
	if e.cmd != nil {
		return errors.New("enforcer already running")
	}
	if err := os.MkdirAll(e.sockDir, 0o700); err != nil {
		return err
	}
	return e.start("")
}

func (e *Enforcer) start(setTime string) error {
	args := []string{"-c", e.Conf, "-d"}
	if setTime != "" {
		args = append(args, "--set-time", setTime)
	}
	log, err := os.OpenFile(e.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := e.ns.command(e.daemon, args...)
	cmd.Env = e.env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("ods-enforcerd: %w", err)
	}
	log.Close()
	e.cmd, e.done = cmd, make(chan error, 1)
	go func() { e.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-e.done:
			e.cmd = nil
			return fmt.Errorf("ods-enforcerd exited at start (%v): %s", err, e.tail())
		default:
		}
		if c, err := net.Dial("unix", e.Socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.Stop()
	return fmt.Errorf("ods-enforcerd: no socket after 30s: %s", e.tail())
}

func (e *Enforcer) tail() string {
	b, _ := os.ReadFile(e.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// CLI runs ods-enforcer against the sandbox's socket and returns its
// combined output. A command that lost the enforcer's optimistic-locking
// race with its own enforce task ("updating ... in the database failed")
// is tried again, as an operator would.
func (e *Enforcer) CLI(args ...string) (string, error) {
	var out []byte
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		cmd := exec.Command("ods-enforcer", append([]string{"-s", e.Socket}, args...)...)
		cmd.Env = e.env
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "in the database failed") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return string(out), fmt.Errorf("ods-enforcer %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// AddZone adds zone with policy and waits until the enforcer has written its
// signconf, that is until the zone has keys.
func (e *Enforcer) AddZone(zone, policy string) error {
	if err := e.AddZoneNoWait(zone, policy); err != nil {
		return err
	}
	if err := e.WaitSignconf(zone); err != nil {
		return err
	}
	if e.manualKeyGen {
		return nil
	}
	// The key factory runs on events; when it ran for a role before the
	// zone took that role's key, the pool stays one key short until its
	// next run. Ask for the year's keys now, as the automatic generation
	// would (AutomaticKeyGenerationPeriod P1Y), and wait for what that
	// makes: an unused key of every role of the policy. Every test starts
	// from the same pool.
	if _, err := e.CLI("key", "generate", "--policy", policy, "--duration", "P1Y"); err != nil {
		return err
	}
	q := fmt.Sprintf(`SELECT (SELECT count(DISTINCT pk.role) FROM policyKey pk JOIN policy p ON p.id = pk.policyId WHERE p.name = '%[1]s')
		- (SELECT count(DISTINCT k.role) FROM hsmKey k JOIN policy p ON p.id = k.policyId WHERE p.name = '%[1]s' AND k.state = 1)`,
		strings.ReplaceAll(policy, "'", "''"))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if out, err := e.scalar(q); err == nil && out == "0" {
			return e.WaitIdle(deadline)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zone %s: no unused key of every role of policy %s after 60s: %s", zone, policy, e.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddZoneNoWait adds zone with policy (with <ManualKeyGeneration/> it gets
// keys only after key generate).
func (e *Enforcer) AddZoneNoWait(zone, policy string) error {
	in := filepath.Join(e.Dir, "unsigned", zone)
	soa := fmt.Sprintf("%s. 60 IN SOA ns1.%s. hostmaster.%s. 1 60 60 600 60\n%s. 60 IN NS ns1.%s.\nns1.%s. 60 IN A 192.0.2.1\n",
		zone, zone, zone, zone, zone, zone)
	if err := os.WriteFile(in, []byte(soa), 0o644); err != nil {
		return err
	}
	_, err := e.CLI("zone", "add", "--zone", zone, "--policy", policy, "-i", in,
		"-o", filepath.Join(e.Dir, "signed", zone), "-s", e.signconf(zone))
	return err
}

func (e *Enforcer) signconf(zone string) string { return filepath.Join(e.Dir, "signconf", zone+".xml") }

// WaitSignconf waits until the zone's signconf is written and the enforcer
// is idle again (its keys made).
func (e *Enforcer) WaitSignconf(zone string) error {
	signconf := e.signconf(zone)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(signconf); err == nil && fi.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zone %s: no signconf after 60s: %s", zone, e.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e.WaitIdle(deadline)
}

// GenerateKeys runs `key generate --policy P --duration D` and waits until
// the enforcer has made the keys.
func (e *Enforcer) GenerateKeys(policy, duration string) error {
	if _, err := e.CLI("key", "generate", "--policy", policy, "--duration", duration); err != nil {
		return err
	}
	return e.WaitIdle(time.Now().Add(120 * time.Second))
}

// WaitIdle waits until the enforcer has nothing to do now: every worker
// idle and no task due (`ods-enforcer queue`). Key generation, zone
// enforcement and signconf writing are all tasks, so an idle enforcer has
// made every key it is going to make.
func (e *Enforcer) WaitIdle(deadline time.Time) error {
	for {
		out, err := e.CLI("queue")
		if err == nil && Idle(out) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("enforcer still busy: %s", e.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scalar runs a query of one value on the enforcer's database.
func (e *Enforcer) scalar(query string) (string, error) {
	if e.MySQL != nil {
		out, err := e.MySQL.Query(query)
		return strings.TrimSpace(out), err
	}
	db, err := sql.Open("sqlite", "file:"+e.DB+"?mode=ro&_pragma=busy_timeout(2000)")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v sql.NullString
	err = db.QueryRow(query).Scan(&v)
	return v.String, err
}

var (
	queueNow  = regexp.MustCompile(`It is now .*\((\d+) seconds since epoch\)`)
	queueNext = regexp.MustCompile(`Next task scheduled .*\((\d+) seconds since epoch\)`)
)

// Idle reads `ods-enforcer queue`: every worker idle, and no task scheduled
// or the next one in the future (by the enforcer's clock, which time leap
// moves).
func Idle(queue string) bool {
	if !strings.Contains(queue, "All worker threads idle.") {
		return false
	}
	if strings.Contains(queue, "There are 0 tasks scheduled.") {
		return true
	}
	now, next := queueNow.FindStringSubmatch(queue), queueNext.FindStringSubmatch(queue)
	if now == nil || next == nil {
		return false
	}
	n, _ := strconv.ParseInt(now[1], 10, 64)
	m, _ := strconv.ParseInt(next[1], 10, 64)
	return m > n
}

// Stop stops the daemon: SIGTERM, then SIGKILL after 10 s.
func (e *Enforcer) Stop() error {
	if e.cmd == nil {
		return nil
	}
	stopDaemon(e.cmd.Process.Pid, false, e.done, 10*time.Second)
	e.cmd = nil
	return nil
}

// stopDaemon stops a daemon started in a process group of its own and
// waited for on done: SIGTERM to it (to its whole group when group), then
// SIGKILL to the group after grace.
func stopDaemon(pid int, group bool, done <-chan error, grace time.Duration) {
	target := pid
	if group {
		target = -pid
	}
	syscall.Kill(target, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// Close stops the daemons (the signer's too) and removes the socket's
// folder.
func (e *Enforcer) Close() error {
	e.stopSigner()
	err := e.Stop()
	e.ns.close()
	os.RemoveAll(e.sockDir)
	return err
}
