package main

// The HSM benchmark (issue 28): PKCS#11 calls and wall time of check,
// verify and the DS hook at about 1,000 and 10,000 keys, with 0, 1 and 5
// ms added to every call by the lab's quirks module (a network HSM's round
// trip), beside pkcs11-tool -O through the same module, and beside the
// floor: p11floor.c, the least PKCS#11 work each answer needs, on the same
// token through the same module. And check as it answers at scale with
// [check] token_max_age: from the record ods-keyguard scan writes.
//
// The token: the real enforcer makes one zone's keys, then p11floor
// generates the rest of the key pairs in one session (10,000 through the
// enforcer take about an hour here), and they are entered into kasp.db as
// the enforcer's pool keys, so that check and verify judge every one. The
// token folder is on /dev/shm: generation on this machine's disk costs
// 150 ms a key.

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/p11quirks"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

//go:embed csrc/p11floor.c
var p11floorSource []byte

// buildFloor compiles p11floor.c into dir.
func buildFloor(dir string) (string, error) {
	src := filepath.Join(dir, "p11floor.c")
	bin := filepath.Join(dir, "p11floor")
	if err := os.WriteFile(src, p11floorSource, 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("gcc", "-Wall", "-O2", "-o", bin, src, "-ldl", "-I/usr/include/p11-kit-1").CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc p11floor.c: %v: %s", err, out)
	}
	return bin, nil
}

// hsmRow is one command at one latency.
type hsmRow struct {
	name, ref string
	latency   int // ms a call
	wall      []time.Duration
	calls     map[string]int // summed over the command's processes, first run
	note      string
}

// hsmSetup makes the token of about n keys and everything around it.
type hsmSetup struct {
	dir, cfg, conf, quirks, floor, so, ksk, kskID string
	keys                                          int
}

func setupHSM(bin string, n int) (*hsmSetup, error) {
	dir, err := os.MkdirTemp("/dev/shm", "ods-keyguard-bench-hsm")
	if err != nil {
		return nil, err
	}
	s := &hsmSetup{dir: dir}
	if s.floor, err = buildFloor(dir); err != nil {
		return s, err
	}
	if s.so, err = p11quirks.Build(); err != nil {
		return s, err
	}
	if s.conf, err = sandbox.SoftHSM(filepath.Join(dir, "softhsm")); err != nil {
		return s, err
	}
	os.Setenv("SOFTHSM2_CONF", s.conf)
	if err := sandbox.InitToken(s.conf, "ods-a", sandbox.PIN); err != nil {
		return s, err
	}
	e, err := sandbox.Start(sandbox.Options{Dir: filepath.Join(dir, "ods"), SoftHSMConf: s.conf})
	if err != nil {
		return s, err
	}
	if err := e.AddZone("example.com", "test"); err != nil {
		e.Close()
		return s, err
	}
	ksk, err := e.CLI("key", "export", "--zone", "example.com", "--keytype", "ksk", "--keystate", "publish")
	if err != nil {
		e.Close()
		return s, err
	}
	s.ksk = strings.TrimPrefix(ksk, "sock set to "+e.Socket+"\n")
	s.cfg = filepath.Join(dir, "keyguard.toml")
	s.quirks = filepath.Join(dir, "quirks.conf")
	toml := fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n\n[check]\nnew_zones = { test = 0 }\n\n[repository.SoftHSM]\nenv = { P11QUIRKS_MODULE = %q, P11QUIRKS_CONF = %q }\n",
		e.Conf, filepath.Join(dir, "state"), sandbox.Module, s.quirks)
	if err := os.WriteFile(s.cfg, []byte(toml), 0o600); err != nil {
		e.Close()
		return s, err
	}
	for _, step := range []string{"prepare", "done"} {
		if out, err := exec.Command(bin, "--config", s.cfg, "backup", step).CombinedOutput(); err != nil {
			e.Close()
			return s, fmt.Errorf("backup %s: %v: %s", step, err, out)
		}
	}
	e.Close()
	id, err := exec.Command("sqlite3", e.DB, "SELECT h.locator FROM hsmKey h JOIN keyData k ON k.hsmKeyId = h.id WHERE k.role = 1").Output()
	if err != nil {
		return s, err
	}
	s.kskID = strings.TrimSpace(string(id))
	have, err := exec.Command("sqlite3", e.DB, "SELECT count(*) FROM hsmKey").Output()
	if err != nil {
		return s, err
	}
	made := 0
	fmt.Sscan(string(have), &made)
	// The rest of the keys: generated in one session, entered as the
	// enforcer's unused ZSKs of policy test.
	fmt.Fprintf(os.Stderr, "bench: generating %d key pairs...\n", n-made)
	start := time.Now()
	out, err := exec.Command(s.floor, sandbox.Module, "ods-a", sandbox.PIN, "gen", fmt.Sprint(n-made)).Output()
	if err != nil {
		return s, fmt.Errorf("p11floor gen: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: generated in %s\n", time.Since(start).Round(time.Second))
	var sql strings.Builder
	sql.WriteString("BEGIN;\n")
	now := time.Now().Unix()
	for _, loc := range strings.Fields(string(out)) {
		fmt.Fprintf(&sql, "INSERT INTO hsmKey (policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup) SELECT id, '%s', 1, 256, 13, 2, %d, 0, 3, 'SoftHSM', 0 FROM policy WHERE name = 'test';\n", loc, now)
	}
	sql.WriteString("COMMIT;\n")
	cmd := exec.Command("sqlite3", e.DB)
	cmd.Stdin = strings.NewReader(sql.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return s, fmt.Errorf("sqlite3: %v: %s", err, out)
	}
	have, _ = exec.Command("sqlite3", e.DB, "SELECT count(*) FROM hsmKey").Output()
	fmt.Sscan(string(have), &s.keys)
	// ods-keyguard reads the token through the quirks module from now on
	// (the enforcer is stopped): conf.xml's module is the wrapper.
	confXML, err := os.ReadFile(e.Conf)
	if err != nil {
		return s, err
	}
	confXML = bytes.ReplaceAll(confXML, []byte("<Module>"+sandbox.Module+"</Module>"), []byte("<Module>"+s.so+"</Module>"))
	return s, os.WriteFile(e.Conf, confXML, 0o600)
}

func benchHSM(bin string, n, runs int, latencies []int) (string, error) {
	s, err := setupHSM(bin, n)
	if s != nil && s.dir != "" {
		defer os.RemoveAll(s.dir)
	}
	if err != nil {
		return "", err
	}
	counts := filepath.Join(s.dir, "calls")
	env := []string{"P11QUIRKS_MODULE=" + sandbox.Module, "P11QUIRKS_CONF=" + s.quirks}
	p11 := []string{"pkcs11-tool", "--module", s.so, "--token-label", "ods-a", "--login", "--pin", sandbox.PIN}
	floor := []string{s.floor, s.so, "ods-a", sandbox.PIN}
	recordCfg := filepath.Join(s.dir, "record.toml")
	b, _ := os.ReadFile(s.cfg)
	if err := os.WriteFile(recordCfg, bytes.Replace(b, []byte("[check]\n"), []byte("[check]\ntoken_max_age = \"1h\"\n"), 1), 0o600); err != nil {
		return "", err
	}
	type command struct {
		name, ref string
		argv      []string
		stdin     string
		// maxLatency: past this many ms a call the command is not run
		// (its calls at 0 ms say how long it would take at least).
		maxLatency int
	}
	cmds := []command{
		{"p11floor check", "", append(floor, "check"), "", 99},
		{"ods-keyguard check", "p11floor check", []string{bin, "--config", s.cfg, "check", "-t", "900"}, "", 99},
		{"ods-keyguard scan", "p11floor verify", []string{bin, "--config", s.cfg, "scan", "-t", "900"}, "", 99},
		{"ods-keyguard check (token_max_age)", "p11floor check", []string{bin, "--config", recordCfg, "check", "-t", "900"}, "", 99},
		{"p11floor verify", "", append(floor, "verify"), "", 99},
		{"ods-keyguard verify", "p11floor verify", []string{bin, "--config", s.cfg, "verify", "-t", "900"}, "", 99},
		{"pkcs11-tool -O", "p11floor verify", append(p11, "-O"), "", 1},
		{"p11floor hook", "", append(floor, "hook", s.kskID), "", 99},
		{"ods-keyguard hook ds-submit (decision)", "p11floor hook", []string{bin, "--config", s.cfg, "hook", "ds-submit"}, s.ksk, 99},
	}
	// pkcs11-tool asks about 40 calls a key: at 10,000 keys and 1 ms a
	// call that is seven minutes; it runs with latency below 2,000 keys.
	if n > 2000 {
		for i := range cmds {
			if cmds[i].argv[0] == "pkcs11-tool" {
				cmds[i].maxLatency = 0
			}
		}
	}
	var rows []*hsmRow
	zeroCalls := map[string]int{}
	// One round first, not measured: it makes ods-keyguard's kept copy of
	// the token, as the first run after a reboot does, and warms the page
	// cache for every command alike.
	if err := os.WriteFile(s.quirks, []byte("latency = 0ms\n"), 0o644); err != nil {
		return "", err
	}
	for _, c := range cmds {
		if c.argv[0] == "pkcs11-tool" {
			continue // a minute at 10,000 keys, and nothing to warm
		}
		start := time.Now()
		if _, err := run(c.argv, c.stdin, env, 30*time.Minute); err != nil {
			return "", fmt.Errorf("%s, the unmeasured round: %w", c.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %d keys, unmeasured round: %s: %s\n", s.keys, c.name, time.Since(start).Round(time.Millisecond))
	}
	for _, lat := range latencies {
		knobs := fmt.Sprintf("latency = %dms\ncount = %s\n", lat, counts)
		if err := os.WriteFile(s.quirks, []byte(knobs), 0o644); err != nil {
			return "", err
		}
		n := runs
		if lat > 0 {
			n = 1
		}
		var round []*hsmRow
		for _, c := range cmds {
			r := &hsmRow{name: c.name, ref: c.ref, latency: lat}
			rows = append(rows, r)
			if lat > c.maxLatency {
				if z := zeroCalls[c.name]; z > 0 {
					r.note = fmt.Sprintf("not run: %d calls at %d ms are %s at least", z, lat, (time.Duration(z*lat) * time.Millisecond).Round(time.Second))
				}
				round = append(round, nil)
				continue
			}
			round = append(round, r)
		}
		// Round after round, every command once, each beside its floor:
		// a moment when the machine is busy falls on both alike.
		for i := 0; i < n; i++ {
			for j, c := range cmds {
				r := round[j]
				if r == nil {
					continue
				}
				os.Remove(counts)
				wall, err := run(c.argv, c.stdin, env, 30*time.Minute)
				if err != nil {
					return "", fmt.Errorf("%s at %d ms: %w", c.name, lat, err)
				}
				r.wall = append(r.wall, wall)
				if i == 0 {
					if cs, err := p11quirks.ReadCounts(counts); err == nil {
						r.calls = p11quirks.Sum(cs)
					} else {
						r.calls = map[string]int{}
					}
				}
				fmt.Fprintf(os.Stderr, "bench: %d keys, %d ms: %s: %s, %d calls\n", s.keys, lat, c.name, wall.Round(time.Millisecond), r.calls["calls"])
				if lat == 0 {
					zeroCalls[c.name] = r.calls["calls"]
				}
			}
		}
	}
	return hsmTable(s.keys, rows, latencies), nil
}

// run runs argv once with env added and returns its wall time; exit
// statuses 1 and 2 (WARNING, CRITICAL, problems, withheld) are answers.
func run(argv []string, stdin string, env []string, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr, stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	if errors.As(err, &ee) && (ee.ExitCode() == 1 || ee.ExitCode() == 2) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("%v: %s %s", err, firstLine(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return wall, nil
}

func hsmTable(keys int, rows []*hsmRow, latencies []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %d keys on one SoftHSMv2 token, through the quirks module\n\n", keys)
	b.WriteString("| command | ms a call | runs | median wall | vs floor | PKCS#11 calls | per key | C_GetAttributeValue | C_FindObjects |\n|---|---|---|---|---|---|---|---|---|\n")
	byName := map[string]*hsmRow{}
	for _, r := range rows {
		byName[fmt.Sprint(r.latency, r.name)] = r
	}
	for _, r := range rows {
		if len(r.wall) == 0 {
			note := r.note
			if note == "" {
				note = "not run"
			}
			fmt.Fprintf(&b, "| `%s` | %d | 0 | %s | - | - | - | - | - |\n", r.name, r.latency, note)
			continue
		}
		m := median(r.wall)
		vs := "floor"
		if ref, ok := byName[fmt.Sprint(r.latency, r.ref)]; ok && r.ref != "" && len(ref.wall) > 0 {
			// Each round's time over its floor's in the same round: a
			// busy moment of the machine moves both.
			var ratios []time.Duration
			for i := 0; i < len(r.wall) && i < len(ref.wall); i++ {
				ratios = append(ratios, time.Duration(float64(r.wall[i])/float64(ref.wall[i])*1e6))
			}
			vs = fmt.Sprintf("%.2fx `%s`", float64(median(ratios))/1e6, r.ref)
		}
		calls := r.calls["calls"]
		fmt.Fprintf(&b, "| `%s` | %d | %d | %s | %s | %d | %.2f | %d | %d |\n", r.name, r.latency, len(r.wall), m.Round(time.Millisecond), vs,
			calls, float64(calls)/float64(keys), r.calls["C_GetAttributeValue"], r.calls["C_FindObjects"])
	}
	return b.String()
}

func writeHSM(path, binary, tables string, runs int) error {
	header := fmt.Sprintf("## Network HSMs: PKCS#11 calls and wall time (issue 28)\n\nRun %s, `make bench-hsm`, %s.\n"+
		"Every PKCS#11 call goes through the lab's quirks module (internal/lab/p11quirks) in front of SoftHSMv2, which adds the stated\n"+
		"latency to each call and counts the calls of every process (ods-keyguard's reader children included). The floor is\n"+
		"internal/lab/bench/csrc/p11floor.c: the least PKCS#11 work each answer needs (check: every private key's CKA_ID, key type\n"+
		"and curve in one C_GetAttributeValue; verify: that and every public key's point; the hook: one key pair found by CKA_ID),\n"+
		"through the same module. The token folder is on /dev/shm; the enforcer made one zone's keys and the rest were generated\n"+
		"by p11floor and entered into kasp.db as pool keys. %d rounds (median) at 0 ms, one at 1 and 5 ms, after one round not\n"+
		"measured (it makes ods-keyguard's kept copy, as the first run after a reboot does). A round runs every command once in\n"+
		"turn, and \"vs floor\" is the median over the rounds of the command's time over its floor's in the same round, so that\n"+
		"a busy moment of the machine falls on both alike. ods-keyguard reads\n"+
		"SoftHSMv2 from its kept copy (the safe read, brought up to date at every run), pkcs11-tool and p11floor read it in place. \"check (token_max_age)\" is check\n"+
		"judging from the record that the scan just before it wrote.\n\n", machine(), version(binary), runs)
	return writeSection(path, "hsm", header+tables)
}
