package main

// The SoftHSMv2 concurrency experiment (issue 17, item 7): does a token
// lose keys when other processes read it while the real enforcer
// generates? Each run makes a fresh token and a fresh enforcer, lets it
// pre-generate about n keys for one zone while readers of one kind run in a
// loop, then stops everything and reconciles the token with kasp.db from a
// process of its own. Not part of the test suite: it takes minutes.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/p11quirks"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// raceCondition is one kind of reader that runs beside the generation.
type raceCondition struct {
	name string
	// loops are the commands run over and over, each loop in a goroutine
	// of its own, while the enforcer generates.
	loops [][]string
	// conf is added to the readers' keyguard.toml.
	conf string
}

// raceRun is what one generation left behind.
type raceRun struct {
	Condition  string        `json:"condition"`
	Keys       int           `json:"keys"`        // hsmKey rows in kasp.db
	Lost       []string      `json:"lost"`        // hsmKey locators without a private key on the token
	LostPublic []string      `json:"lost_public"` // hsmKey locators without a public key on the token
	Orphans    []string      `json:"orphans"`     // private keys on the token that kasp.db lacks
	EmptyID    int           `json:"empty_id"`    // token objects whose CKA_ID is empty or absent
	Files      int           `json:"files"`       // *.object files in the token folder, token.object aside
	Objects    int           `json:"objects"`     // objects SoftHSMv2 lists after login
	Took       time.Duration `json:"took"`        // zone add to idle
	Stalled    bool          `json:"stalled"`     // not idle before the deadline
	Reads      int           `json:"reads"`       // reader invocations
	ReadFails  int           `json:"read_fails"`  // reader invocations that failed
	ReadSample string        `json:"read_sample"` // one failure's message
	Err        string        `json:"error,omitempty"`
}

// raceDeadline bounds one generation, readers included.
const raceDeadline = 4 * time.Minute

// raceConditions are the reader kinds by name: bin is ods-keyguard, fixed
// an ods-keyguard built with the fix (optional).
func raceConditions(names []string, bin, fixed string) ([]raceCondition, error) {
	p11 := []string{"pkcs11-tool", "--module", sandbox.Module, "--token-label", "ods-a"}
	var out []raceCondition
	for _, n := range names {
		switch n {
		case "none":
			out = append(out, raceCondition{name: n})
		case "keyguard", "keyguard-fixed":
			b := bin
			if n == "keyguard-fixed" {
				if fixed == "" {
					return nil, errors.New("keyguard-fixed needs -race-fixed BINARY")
				}
				b = fixed
			}
			out = append(out, raceCondition{name: n, loops: [][]string{
				{b, "--config", "CONFIG", "verify"},
				{b, "--config", "CONFIG", "check", "-t", "30"},
			}})
		case "keyguard-wrapped":
			// The same token read a second time as a mirror through a
			// wrapper module (the lab's quirks module, no knobs), whose
			// file name does not say SoftHSMv2: the reader must know it
			// by C_GetInfo and read a copy.
			so, err := p11quirks.Build()
			if err != nil {
				return nil, err
			}
			out = append(out, raceCondition{name: n, loops: [][]string{
				{bin, "--config", "CONFIG", "verify"},
				{bin, "--config", "CONFIG", "check", "-t", "30"},
			}, conf: fmt.Sprintf("\n[[mirror]]\nrepository = \"SoftHSM\"\nname = \"wrapped\"\nmodule = %q\ntoken_label = \"ods-a\"\nenv = { P11QUIRKS_MODULE = %q }\n", so, sandbox.Module)})
		case "pkcs11-tool":
			login := append(append([]string(nil), p11...), "--login", "--pin", sandbox.PIN, "-O")
			out = append(out, raceCondition{name: n, loops: [][]string{login, login}})
		case "pkcs11-tool-nologin":
			nologin := append(append([]string(nil), p11...), "-O")
			out = append(out, raceCondition{name: n, loops: [][]string{nologin, nologin}})
		default:
			return nil, fmt.Errorf("unknown reader kind %q (none, keyguard, keyguard-fixed, keyguard-wrapped, pkcs11-tool, pkcs11-tool-nologin)", n)
		}
	}
	return out, nil
}

// benchRace runs runs generations of about n keys per condition,
// interleaved, and returns the section for BENCHMARKS.md.
func benchRace(self, bin, fixed string, runs, n int, kinds []string, logPath string) (string, error) {
	conds, err := raceConditions(kinds, bin, fixed)
	if err != nil {
		return "", err
	}
	var log *os.File
	if logPath != "" {
		if log, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return "", err
		}
		defer log.Close()
	}
	results := map[string][]raceRun{}
	start := time.Now()
	for i := 0; i < runs; i++ {
		for _, c := range conds {
			r := raceOnce(self, c, n)
			results[c.name] = append(results[c.name], r)
			line, _ := json.Marshal(r)
			fmt.Fprintf(os.Stderr, "race: run %d/%d %s\n", i+1, runs, line)
			if log != nil {
				fmt.Fprintf(log, "%s\n", line)
			}
		}
	}
	return raceTable(conds, results, n, time.Since(start)), nil
}

// raceOnce is one generation of about n keys with the readers of c.
func raceOnce(self string, c raceCondition, n int) (r raceRun) {
	r.Condition = c.name
	dir, err := os.MkdirTemp("", "ods-keyguard-race")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer func() {
		if os.Getenv("RACE_KEEP") != "" && (r.Err != "" || r.Stalled || len(r.Lost)+len(r.LostPublic)+len(r.Orphans)+r.EmptyID > 0) {
			fmt.Fprintf(os.Stderr, "race: kept %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	conf, err := sandbox.SoftHSM(filepath.Join(dir, "softhsm"))
	if err == nil {
		err = sandbox.InitToken(conf, "ods-a", sandbox.PIN)
	}
	if err != nil {
		r.Err = err.Error()
		return r
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	e, err := sandbox.Start(sandbox.Options{Dir: filepath.Join(dir, "ods"), SoftHSMConf: conf, Kasp: kaspFor(n)})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	cfg := filepath.Join(dir, "keyguard.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n%s", e.Conf, filepath.Join(dir, "state"), c.conf)), 0o600); err != nil {
		e.Close()
		r.Err = err.Error()
		return r
	}

	// The readers start before the zone, so that they overlap the whole
	// generation, and stop between two invocations: a reader killed in
	// the middle of its login is a known way to lose a SoftHSMv2 token,
	// and not what this measures.
	var stop sync.WaitGroup
	stopping := make(chan struct{})
	var mu sync.Mutex
	for _, loop := range c.loops {
		argv := make([]string, len(loop))
		for i, a := range loop {
			argv[i] = strings.ReplaceAll(a, "CONFIG", cfg)
		}
		stop.Add(1)
		go func() {
			defer stop.Done()
			for {
				select {
				case <-stopping:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
				cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
				out, err := cmd.CombinedOutput()
				cancel()
				mu.Lock()
				r.Reads++
				// verify and check report keys that are not backed up
				// with exit codes of their own; a failure here is a
				// reader that could not read.
				if err != nil && readFailed(argv, cmd, string(out)) {
					r.ReadFails++
					if r.ReadSample == "" {
						r.ReadSample = firstLine(string(out))
					}
				}
				mu.Unlock()
			}
		}()
	}

	began := time.Now()
	err = e.AddZoneNoWait("example.com", "test")
	if err == nil {
		err = waitSettled(e, began.Add(raceDeadline))
		if errors.Is(err, errStalled) {
			r.Stalled, err = true, nil
		}
	}
	r.Took = time.Since(began).Round(time.Second)
	close(stopping)
	stop.Wait()
	e.Close()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if err := reconcile(self, conf, e.DB, &r); err != nil {
		r.Err = err.Error()
	}
	return r
}

// readFailed tells a reader that could not read from one that reported
// what it read: verify and check exit non-zero when keys are not backed up
// (no ceremony runs here), so their failures are told by their messages.
func readFailed(argv []string, cmd *exec.Cmd, out string) bool {
	if cmd.ProcessState == nil {
		return true
	}
	if filepath.Base(argv[0]) == "pkcs11-tool" {
		return true
	}
	low := strings.ToLower(out)
	for _, s := range []string{"ckr_", "did not answer", "not found in", "reader process", "unknown"} {
		if strings.Contains(low, s) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Using slot") {
			if len(l) > 200 {
				l = l[:200]
			}
			return l
		}
	}
	return ""
}

var errStalled = errors.New("enforcer not idle before the deadline")

// waitSettled waits until the enforcer is idle and kasp.db's key count has
// not moved for 3 s (a generation that failed half way leaves the enforcer
// idle with fewer keys).
func waitSettled(e *sandbox.Enforcer, deadline time.Time) error {
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 10000", e.DB, "SELECT count(*) FROM hsmKey").Output()
		if err == nil {
			got, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			if got != last {
				last, since = got, time.Now()
			}
		}
		if last > 0 && time.Since(since) > 3*time.Second {
			if q, err := e.CLI("queue"); err == nil && sandbox.Idle(q) {
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return errStalled
}

// tokenObject is one object as SoftHSMv2 lists it after login.
type tokenObject struct {
	Class int64  `json:"class"` // -1 when absent
	ID    string `json:"id"`    // hex; "" when empty or absent
}

// reconcile compares kasp.db with the token, read by a process of its own
// (a module is initialized once per process) after the enforcer stopped.
func reconcile(self, conf, db string, r *raceRun) error {
	cmd := exec.Command(self, "-race-list")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("listing the token: %v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return fmt.Errorf("listing the token: %w", err)
	}
	var objs []tokenObject
	if err := json.Unmarshal(out, &objs); err != nil {
		return fmt.Errorf("listing the token: %w", err)
	}
	rows, err := exec.Command("sqlite3", "-cmd", ".timeout 10000", db, "SELECT lower(locator) FROM hsmKey").Output()
	if err != nil {
		return fmt.Errorf("kasp.db: %w", err)
	}
	kasp := map[string]bool{}
	for _, l := range strings.Fields(string(rows)) {
		kasp[l] = true
	}
	r.Keys = len(kasp)
	priv, pub := map[string]bool{}, map[string]bool{}
	for _, o := range objs {
		if o.ID == "" {
			r.EmptyID++
		}
		if o.Class == int64(pkcs11.CKO_PRIVATE_KEY) && o.ID != "" {
			priv[o.ID] = true
		}
		if o.Class == int64(pkcs11.CKO_PUBLIC_KEY) && o.ID != "" {
			pub[o.ID] = true
		}
	}
	r.Objects = len(objs)
	for l := range kasp {
		if !priv[l] {
			r.Lost = append(r.Lost, l)
		}
		if !pub[l] {
			r.LostPublic = append(r.LostPublic, l)
		}
	}
	for id := range priv {
		if !kasp[id] {
			r.Orphans = append(r.Orphans, id)
		}
	}
	sort.Strings(r.Lost)
	sort.Strings(r.LostPublic)
	sort.Strings(r.Orphans)
	// Files SoftHSMv2 does not list (empty or unparsable) show up as the
	// difference between the files and the objects.
	tokens, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), "tokens", "*", "*.object"))
	for _, f := range tokens {
		if filepath.Base(f) != "token.object" {
			r.Files++
		}
	}
	return nil
}

// raceList is the -race-list mode: every object of token "ods-a" (after
// login) as JSON on stdout.
func raceList() error {
	p := pkcs11.New(sandbox.Module)
	if p == nil {
		return errors.New("cannot load " + sandbox.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return err
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != "ods-a" {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return err
		}
		if err := p.Login(sh, pkcs11.CKU_USER, sandbox.PIN); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		if err := p.FindObjectsInit(sh, nil); err != nil {
			return err
		}
		var hs []pkcs11.ObjectHandle
		for {
			got, _, err := p.FindObjects(sh, 1024)
			if err != nil {
				return err
			}
			hs = append(hs, got...)
			if len(got) < 1024 {
				break
			}
		}
		p.FindObjectsFinal(sh)
		objs := []tokenObject{}
		for _, h := range hs {
			o := tokenObject{Class: -1}
			if a, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)}); err == nil && len(a[0].Value) > 0 {
				var v int64
				for i := len(a[0].Value) - 1; i >= 0; i-- {
					v = v<<8 | int64(a[0].Value[i])
				}
				o.Class = v
			}
			if a, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)}); err == nil {
				o.ID = hex.EncodeToString(a[0].Value)
			}
			objs = append(objs, o)
		}
		p.Logout(sh)
		p.CloseSession(sh)
		return json.NewEncoder(os.Stdout).Encode(objs)
	}
	return errors.New(`token "ods-a" not found`)
}

// raceTable summarises the runs per condition, and lists every run that
// lost a key.
func raceTable(conds []raceCondition, results map[string][]raceRun, n int, took time.Duration) string {
	// A generation went through when it made as many keys as the least a
	// run without readers made (the enforcer's count varies by one with
	// the moment it computes the pool).
	full := 0
	for _, r := range results["none"] {
		if r.Err == "" && (full == 0 || r.Keys < full) {
			full = r.Keys
		}
	}
	if full == 0 {
		for _, rs := range results {
			for _, r := range rs {
				full = max(full, r.Keys)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| readers beside the enforcer | runs | keys made per run (min-max) | runs that stopped short of %d | runs with a lost key | private keys lost | public keys lost | orphan private keys | objects without CKA_ID | object files not listed | runs not settled in %s | reader invocations (failed) |\n", full, raceDeadline)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var notes []string
	for _, c := range conds {
		rs := results[c.name]
		minK, maxK := -1, 0
		var short, lostRuns, lost, lostPub, orphans, empty, hidden, stalled, reads, fails, errs int
		var damaged []string
		samples := map[string]bool{}
		var sampleList []string
		for i, r := range rs {
			if r.Err != "" {
				errs++
				notes = append(notes, fmt.Sprintf("%s, run %d: %s", raceName(c), i+1, r.Err))
				continue
			}
			if minK < 0 || r.Keys < minK {
				minK = r.Keys
			}
			maxK = max(maxK, r.Keys)
			if r.Keys < full {
				short++
			}
			if len(r.Lost)+len(r.LostPublic) > 0 {
				lostRuns++
				damaged = append(damaged, fmt.Sprintf("%d (%d keys made; %d private, %d public objects lost)", i+1, r.Keys, len(r.Lost), len(r.LostPublic)))
			}
			lost += len(r.Lost)
			lostPub += len(r.LostPublic)
			orphans += len(r.Orphans)
			empty += r.EmptyID
			hidden += max(0, r.Files-r.Objects)
			if r.Stalled {
				stalled++
			}
			reads += r.Reads
			fails += r.ReadFails
			if r.ReadSample != "" && !samples[r.ReadSample] && len(sampleList) < 3 {
				samples[r.ReadSample] = true
				sampleList = append(sampleList, "`"+r.ReadSample+"`")
			}
		}
		keys := "-"
		if minK >= 0 {
			keys = fmt.Sprintf("%d-%d", minK, maxK)
		}
		done := len(rs) - errs
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d (%d) |\n", raceName(c), done, keys, short, lostRuns, lost, lostPub, orphans, empty, hidden, stalled, reads, fails)
		if len(damaged) > 0 {
			notes = append(notes, fmt.Sprintf("%s: keys lost in runs %s", raceName(c), strings.Join(damaged, ", ")))
		}
		if len(sampleList) > 0 {
			notes = append(notes, fmt.Sprintf("%s: readers that failed or alarmed said, e.g., %s", raceName(c), strings.Join(sampleList, ", ")))
		}
	}
	fmt.Fprintf(&b, "\nAbout %d keys per generation (ECDSA P-256, pool pre-generation for one zone); %s in all.\n", n, took.Round(time.Minute))
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// renderRace writes the section again from the runs' log (-race-log), in
// the order of kinds, without running anything.
func renderRace(logPath string, kinds []string, bin, fixed string, n int, took time.Duration) (string, int, error) {
	conds, err := raceConditions(kinds, bin, fixed)
	if err != nil {
		return "", 0, err
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		return "", 0, err
	}
	results := map[string][]raceRun{}
	runs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r raceRun
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return "", 0, fmt.Errorf("%s: %w", logPath, err)
		}
		results[r.Condition] = append(results[r.Condition], r)
		runs = max(runs, len(results[r.Condition]))
	}
	return raceTable(conds, results, n, took), runs, nil
}

func raceName(c raceCondition) string {
	switch c.name {
	case "none":
		return "none"
	case "keyguard":
		return "`ods-keyguard verify` and `check`, one loop each"
	case "keyguard-fixed":
		return "`ods-keyguard verify` and `check` with the fix, one loop each"
	case "keyguard-wrapped":
		return "`ods-keyguard verify` and `check`, one loop each, the token also read as a mirror through a wrapper module"
	case "pkcs11-tool":
		return "`pkcs11-tool --login -O`, two loops"
	case "pkcs11-tool-nologin":
		return "`pkcs11-tool -O` without login, two loops"
	}
	return c.name
}

func writeRace(path, tag, binary, fixed, table string, runs int, kinds string) error {
	header := fmt.Sprintf("## SoftHSMv2: generation with readers beside it (%s)\n\nRun %s, `go run ./internal/lab/bench -race %d -race-readers %s -race-tag %s`, %s.\n", tag, machine(), runs, kinds, tag, version(binary))
	if fixed != "" {
		header += fmt.Sprintf("With the fix: %s.\n", version(fixed))
	}
	header += "Each run: a fresh SoftHSMv2 2.6.1 token and a fresh ods-enforcerd; readers of one kind loop while the enforcer pre-generates the zone's keys; when it is idle the readers stop, the enforcer stops, and a process of its own logs in and lists every object: a key of kasp.db without its private (or public) key object is lost, a private key kasp.db lacks is an orphan. Conditions interleaved run by run.\n\n"
	return writeSection(path, "race-"+tag, header+table)
}
