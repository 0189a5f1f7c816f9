// Command bench measures ods-keyguard against the references the issues
// name, on tokens whose keys the real enforcer generated, and writes the
// figures into BENCHMARKS.md with the machine and the date.
//
// Usage: go run ./internal/lab/bench [-sizes 1000,10000] [-runs 5] BINARY
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

func main() {
	sizes := flag.String("sizes", "1000,10000", "approximate key counts, comma separated")
	backends := flag.Int("backends", 0, "instead: compare the SQLite and MySQL backends at about this many keys")
	impls := flag.Int("implementations", 0, "instead: verify and check at about this many keys on SoftHSMv2, NSS softoken and openCryptoki")
	only := flag.String("only", "", "with -implementations: this implementation only")
	tableOnly := flag.Bool("table", false, "with -implementations: print the table instead of writing the file")
	runs := flag.Int("runs", 5, "runs per command (median reported)")
	slow := flag.Duration("slow-timeout", 20*time.Minute, "limit for one run of ods-hsmutil list")
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	publish := flag.Int("publish", 0, "instead: the publish gate's fixed cost per call with this many zones and keys in the enforcer")
	publishSample := flag.Int("publish-sample", 200, "with -publish: zones run")
	race := flag.Int("race", 0, "instead: the SoftHSMv2 concurrency experiment, this many runs per reader kind")
	raceKeys := flag.Int("race-keys", 150, "about this many keys per generation")
	raceKinds := flag.String("race-readers", "none,keyguard,pkcs11-tool,pkcs11-tool-nologin", "reader kinds: none, keyguard, keyguard-fixed, keyguard-wrapped, pkcs11-tool, pkcs11-tool-nologin")
	raceFixed := flag.String("race-fixed", "", "an ods-keyguard built with the fix, for keyguard-fixed")
	raceTag := flag.String("race-tag", "experiment", "names the BENCHMARKS.md section")
	raceLog := flag.String("race-log", "", "append each run as a JSON line to this file")
	hsmSetupOnly := flag.Int("hsm-setup", 0, "instead: make the -hsm token of about this many keys, print its configuration and keep it (to profile by hand)")
	hsm := flag.String("hsm", "", "instead: PKCS#11 calls and wall time through the quirks module at these key counts (comma separated), 0, 1 and 5 ms a call")
	raceListMode := flag.Bool("race-list", false, "internal: list token ods-a's objects as JSON (SOFTHSM2_CONF)")
	raceRender := flag.String("race-render", "", "instead of running: write the section from this -race-log")
	raceTook := flag.Duration("race-took", 0, "with -race-render: how long the runs took")
	ledgerN := flag.Int("ledger", 0, "instead: ledger verify over a log of this many entries, state_dir and MySQL")
	flag.Parse()
	if *raceListMode {
		if err := raceList(); err != nil {
			fatal(err)
		}
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bench [-sizes N,N] [-runs N] BINARY")
		os.Exit(2)
	}
	bin, _ := filepath.Abs(flag.Arg(0))
	if *raceRender != "" {
		fixed := *raceFixed
		if fixed != "" {
			fixed, _ = filepath.Abs(fixed)
		}
		t, runs, err := renderRace(*raceRender, strings.Split(*raceKinds, ","), bin, fixed, *raceKeys, *raceTook)
		if err != nil {
			fatal(err)
		}
		if err := writeRace(*out, *raceTag, bin, fixed, t, runs, *raceKinds); err != nil {
			fatal(err)
		}
		return
	}
	if *race > 0 {
		self, err := os.Executable()
		if err != nil {
			fatal(err)
		}
		fixed := *raceFixed
		if fixed != "" {
			fixed, _ = filepath.Abs(fixed)
		}
		t, err := benchRace(self, bin, fixed, *race, *raceKeys, strings.Split(*raceKinds, ","), *raceLog)
		if err != nil {
			fatal(err)
		}
		if err := writeRace(*out, *raceTag, bin, fixed, t, *race, *raceKinds); err != nil {
			fatal(err)
		}
		return
	}
	if *ledgerN > 0 {
		t, err := benchLedger(bin, *ledgerN, *runs)
		if err != nil {
			fatal(err)
		}
		if err := writeLedger(*out, bin, t); err != nil {
			fatal(err)
		}
		return
	}
	if *hsmSetupOnly > 0 {
		s, err := setupHSM(bin, *hsmSetupOnly)
		if err != nil {
			fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.dir, "ksk.dnskey"), []byte(s.ksk), 0o644); err != nil {
			fatal(err)
		}
		fmt.Printf("kept %s (the KSK's DNSKEY, the hook's input, in ksk.dnskey): %d keys; ods-keyguard --config %s; P11QUIRKS_MODULE=%s P11QUIRKS_CONF=%s SOFTHSM2_CONF=%s; KSK %s\n", s.dir, s.keys, s.cfg, sandbox.Module, s.quirks, s.conf, s.kskID)
		return
	}
	if *hsm != "" {
		var tables []string
		for _, f := range strings.Split(*hsm, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				fatal(fmt.Errorf("-hsm %q: %w", f, err))
			}
			t, err := benchHSM(bin, n, *runs, []int{0, 1, 5})
			if err != nil {
				fatal(err)
			}
			tables = append(tables, t)
		}
		if err := writeHSM(*out, bin, strings.Join(tables, "\n"), *runs); err != nil {
			fatal(err)
		}
		return
	}
	if *publish > 0 {
		t, err := benchPublish(bin, *publish, *publishSample)
		if err != nil {
			fatal(err)
		}
		if err := writePublish(*out, bin, t); err != nil {
			fatal(err)
		}
		return
	}
	if *impls > 0 {
		t, err := benchImplementations(bin, *impls, *runs, *only)
		if err != nil {
			fatal(err)
		}
		if *tableOnly {
			fmt.Print(t)
			return
		}
		if err := writeImplementations(*out, bin, t); err != nil {
			fatal(err)
		}
		return
	}
	if *backends > 0 {
		t, err := benchBackends(bin, *backends, *runs)
		if err != nil {
			fatal(err)
		}
		if err := writeBackends(*out, bin, t); err != nil {
			fatal(err)
		}
		return
	}
	var tables []string
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fatal(fmt.Errorf("size %q: %w", s, err))
		}
		t, err := benchSize(bin, n, *runs, *slow)
		if err != nil {
			fatal(err)
		}
		tables = append(tables, t)
	}
	if err := writeReport(*out, bin, strings.Join(tables, "\n")); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// kaspFor makes a policy whose ZSK lifetime makes the enforcer pre-generate
// about n keys for one year.
func kaspFor(n int) string {
	lifetime := int(math.Ceil(365 * 24 * 3600 / float64(n)))
	k := strings.Replace(sandbox.DefaultKasp, "<Lifetime>P1Y</Lifetime>", fmt.Sprintf("<Lifetime>PT%dS</Lifetime>", lifetime), 1)
	return strings.Replace(k, "<Lifetime>P2Y</Lifetime>", "<Lifetime>P10Y</Lifetime>", 1)
}

type sample struct {
	name   string
	ref    string // the reference it is compared with
	wall   []time.Duration
	rssKiB []int64
	note   string
}

// generate has the real enforcer make about n keys on a fresh SoftHSMv2
// token in a new folder (removed by the caller): the running enforcer, how
// many keys it made, and how long it took.
func generate(n int) (dir string, e *sandbox.Enforcer, keys int, took time.Duration, err error) {
	dir, err = os.MkdirTemp("", "ods-keyguard-bench")
	if err != nil {
		return "", nil, 0, 0, err
	}
	conf, err := sandbox.SoftHSM(filepath.Join(dir, "softhsm"))
	if err != nil {
		return dir, nil, 0, 0, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	if err := sandbox.InitToken(conf, "ods-a", sandbox.PIN); err != nil {
		return dir, nil, 0, 0, err
	}
	fmt.Fprintf(os.Stderr, "bench: the enforcer generates about %d keys...\n", n)
	start := time.Now()
	e, err = sandbox.Start(sandbox.Options{Dir: filepath.Join(dir, "ods"), SoftHSMConf: conf, Kasp: kaspFor(n)})
	if err != nil {
		return dir, nil, 0, 0, err
	}
	// The enforcer writes the signconf only after it made the pool: with
	// thousands of keys that takes longer than AddZone waits.
	if err := e.AddZoneNoWait("example.com", "test"); err != nil {
		e.Close()
		return dir, nil, 0, 0, err
	}
	keys, err = waitKeys(e.DB, n, 90*time.Minute)
	if err == nil {
		err = e.WaitSignconf("example.com")
	}
	if err != nil {
		e.Close()
		return dir, nil, 0, 0, err
	}
	took = time.Since(start)
	fmt.Fprintf(os.Stderr, "bench: %d keys in %s\n", keys, took.Round(time.Second))
	return dir, e, keys, took, nil
}

func benchSize(bin string, n, runs int, slow time.Duration) (string, error) {
	dir, e, keys, gen, err := generate(n)
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	if err != nil {
		return "", err
	}
	// The KSK's DNSKEY, as the enforcer would pipe it into the DS hook.
	ksk, err := e.CLI("key", "export", "--zone", "example.com", "--keytype", "ksk", "--keystate", "publish")
	e.Close()
	if err != nil {
		return "", err
	}
	ksk = strings.TrimPrefix(ksk, "sock set to "+e.Socket+"\n")
	kskID, err := exec.Command("sqlite3", e.DB, "SELECT h.locator FROM hsmKey h JOIN keyData k ON k.hsmKeyId = h.id WHERE k.role = 1").Output()
	if err != nil {
		return "", err
	}
	cfg := filepath.Join(dir, "keyguard.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n", e.Conf, filepath.Join(dir, "state"))), 0o600); err != nil {
		return "", err
	}
	// A confirmed ceremony over every key, so check and the hook see the
	// covered state they see on a healthy installation.
	for _, step := range []string{"prepare", "done"} {
		if out, err := exec.Command(bin, "--config", cfg, "backup", step).CombinedOutput(); err != nil {
			return "", fmt.Errorf("backup %s: %v: %s", step, err, out)
		}
	}
	p11 := []string{"pkcs11-tool", "--module", sandbox.Module, "--token-label", "ods-a", "--pin", sandbox.PIN}
	listing := "pkcs11-tool -O --type privkey"
	lookup := "pkcs11-tool -O --type privkey --id ID"
	cmds := []struct {
		name, ref string
		argv      []string
		stdin     string
		runs      int
		limit     time.Duration
	}{
		{listing, "", append(p11, "-O", "--type", "privkey"), "", runs, 10 * time.Minute},
		{"ods-keyguard verify", listing, []string{bin, "--config", cfg, "verify"}, "", runs, 10 * time.Minute},
		{"ods-keyguard inventory --json", listing, []string{bin, "--config", cfg, "inventory", "--json"}, "", runs, 10 * time.Minute},
		{"ods-keyguard check", listing, []string{bin, "--config", cfg, "check", "-t", "600"}, "", runs, 10 * time.Minute},
		{lookup, "", append(p11, "-O", "--type", "privkey", "--id", strings.TrimSpace(string(kskID))), "", runs, 10 * time.Minute},
		{"ods-keyguard hook ds-submit (decision)", lookup, []string{bin, "--config", cfg, "hook", "ds-submit"}, ksk, runs, 10 * time.Minute},
		{"ods-hsmutil list", listing, []string{"ods-hsmutil", "-c", e.Conf, "list", "SoftHSM"}, "", 1, slow},
	}
	var samples []sample
	for _, c := range cmds {
		s := sample{name: c.name, ref: c.ref}
		for i := 0; i < c.runs; i++ {
			wall, rss, err := measure(c.argv, c.stdin, c.limit)
			if errors.Is(err, context.DeadlineExceeded) {
				s.note = fmt.Sprintf("stopped after %s", c.limit)
				break
			}
			if err != nil {
				return "", fmt.Errorf("%s: %w", c.name, err)
			}
			s.wall = append(s.wall, wall)
			s.rssKiB = append(s.rssKiB, rss)
			fmt.Fprintf(os.Stderr, "bench: %d keys: %s: %s\n", keys, c.name, wall.Round(time.Millisecond))
		}
		samples = append(samples, s)
	}
	return table(keys, gen, samples), nil
}

func waitKeys(db string, n int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	last, since := 0, time.Now()
	for time.Now().Before(deadline) {
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 10000", db, "SELECT count(*) FROM hsmKey").Output()
		if err == nil {
			got, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			if got != last {
				last, since = got, time.Now()
			}
			if got >= n && time.Since(since) > 5*time.Second {
				return got, nil
			}
		}
		time.Sleep(time.Second)
	}
	return last, fmt.Errorf("only %d of %d keys after %s", last, n, limit)
}

// measure runs argv once: wall time and the peak resident memory.
func measure(argv []string, stdin string, limit time.Duration) (time.Duration, int64, error) {
	return measureWith(argv, stdin, nil, limit)
}

// measureWith is measure with an environment (nil: this process's); on a
// failure the wall time is returned too.
func measureWith(argv []string, stdin string, env []string, limit time.Duration) (time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	if err != nil {
		return wall, 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var rss int64
	if ru != nil {
		rss = ru.Maxrss
	}
	return wall, rss, nil
}

func median[T int64 | time.Duration](v []T) T {
	s := append([]T(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func table(keys int, gen time.Duration, samples []sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %d keys on one SoftHSMv2 token\n\n", keys)
	fmt.Fprintf(&b, "The enforcer generated them in %s (ECDSA P-256, pool pre-generation); a confirmed ceremony covers them all.\n\n", gen.Round(time.Second))
	b.WriteString("| command | runs | median wall | peak RSS | vs reference |\n|---|---|---|---|---|\n")
	medians := map[string]time.Duration{}
	for _, s := range samples {
		if len(s.wall) > 0 {
			medians[s.name] = median(s.wall)
		}
	}
	for _, s := range samples {
		if len(s.wall) == 0 {
			fmt.Fprintf(&b, "| `%s` | 0 | %s | - | - |\n", s.name, s.note)
			continue
		}
		m := median(s.wall)
		ratio := "reference"
		if ref, ok := medians[s.ref]; ok && s.ref != "" {
			ratio = fmt.Sprintf("%.2fx `%s`", float64(m)/float64(ref), s.ref)
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %.1f MiB | %s |\n", s.name, len(s.wall), m.Round(time.Millisecond), float64(median(s.rssKiB))/1024, ratio)
	}
	return b.String()
}

func writeReport(path, binary, tables string) error {
	header := "## Reading tokens: verify, inventory, check and the DS hook\n\nRun %s, `make bench`, %s.\nMedian of the runs; peak RSS is the process's maximum resident set.\nverify, inventory and check are compared with pkcs11-tool's listing of the same token; the hook's\ndecision with pkcs11-tool's look-up of one key by CKA_ID, the floor for one PKCS#11 look-up.\n`ods-hsmutil list` runs once: it looks every key up on its own.\n\n"
	return writeSection(path, "inventory", fmt.Sprintf(header, machine(), version(binary))+tables)
}

// machine says when and where: the date, the host, the CPU and its cores.
func machine() string {
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s on %s (%s, %d cores, %s/%s)", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}

func version(binary string) string {
	ver, _ := exec.Command(binary, "--version").Output()
	return strings.TrimSpace(string(ver))
}

// writeSection replaces the section name of path (between its markers),
// or adds it.
func writeSection(path, name, body string) error {
	begin, end := "<!-- bench:"+name+" begin -->", "<!-- bench:"+name+" end -->"
	section := begin + "\n" + body + end + "\n"
	old, err := os.ReadFile(path)
	if err != nil {
		old = []byte("# Benchmarks\n\nFigures written by `make bench` (internal/lab/bench). Each section is replaced when its benchmark runs again.\n\n")
	}
	text := string(old)
	if i, j := strings.Index(text, begin), strings.Index(text, end); i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end)+1:]
	} else {
		text += "\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
