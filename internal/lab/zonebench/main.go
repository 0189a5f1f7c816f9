// Command zonebench measures zonereview.Review against the zone validators
// Debian packages (validns, ldns-verify-zone, kzonecheck, dnssec-verify) on
// the same zones, signed by dnssec-signzone, and writes the figures into
// BENCHMARKS.md with the machine, the date and the tools' versions.
//
// Usage:
//
//	go run ./internal/lab/zonebench [-quick] [-runs 3] [-big-runs 1] [-cache DIR] [-out BENCHMARKS.md]
//	zonebench review [-workers N] ORIGIN FILE
//
// The zones are generated and signed once and kept under
// ~/.cache/ods-keyguard-bench (signing a million names takes a while).
// -quick measures the 20,000-name zone only. The review subcommand is the
// tiny command that is measured: it reviews FILE and prints the counts.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "review" {
		os.Exit(review(os.Args[2:]))
	}
	os.Exit(bench())
}

// review is the measured command: one zonereview.Review of a file.
func review(args []string) int {
	fs := flag.NewFlagSet("review", flag.ContinueOnError)
	workers := fs.Int("workers", 0, "signature workers (GOMAXPROCS when 0)")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: zonebench review [-workers N] [-cpuprofile FILE] ORIGIN FILE")
		return 2
	}
	if *profile != "" {
		pf, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "zonebench: %v\n", err)
			return 1
		}
		defer pf.Close()
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	f, err := os.Open(fs.Arg(1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "zonebench: %v\n", err)
		return 1
	}
	defer f.Close()
	rep, err := zonereview.Review(context.Background(), f, fs.Arg(0), zonereview.Options{Workers: *workers})
	if err != nil {
		fmt.Fprintf(os.Stderr, "zonebench: %v\n", err)
		return 1
	}
	fmt.Printf("serial %d: %d records, %d names, %d RRsets, %d signatures, %d verified, %d findings (%d errors)\n",
		rep.Serial, rep.Records, rep.Names, rep.RRsets, rep.Signatures, rep.Verified, rep.FindingsTotal, rep.Errors)
	for _, f := range rep.Findings {
		fmt.Println(f)
	}
	if !rep.Passed() {
		return 1
	}
	return 0
}

type tool struct {
	name string
	argv func(self, file string) []string
	// failOK: the tool's verdict is reported, not taken as a failure of
	// the benchmark (validns cannot verify ECDSA with OpenSSL 3).
	failOK bool
}

func tools() []tool {
	return []tool{
		{name: "zonereview", argv: func(self, file string) []string { return []string{self, "review", origin, file} }},
		{name: "validns", failOK: true, argv: func(_, file string) []string { return []string{"validns", "-z", origin, "-n", "2", "-q", file} }},
		{name: "ldns-verify-zone", argv: func(_, file string) []string { return []string{"ldns-verify-zone", "-V", "1", file} }},
		{name: "kzonecheck", argv: func(_, file string) []string { return []string{"kzonecheck", "-o", origin, "-d", "on", file} }},
		{name: "dnssec-verify", argv: func(_, file string) []string { return []string{"dnssec-verify", "-q", "-o", origin, file} }},
	}
}

type result struct {
	tool   string
	walls  []time.Duration
	rss    []int64 // KiB
	cpu    []time.Duration
	status string // "" when every run passed
}

func bench() int {
	home, _ := os.UserHomeDir()
	quick := flag.Bool("quick", false, "only the 20,000-name RSA zone")
	runs := flag.Int("runs", 3, "runs of each tool on zones up to 100,000 names")
	bigRuns := flag.Int("big-runs", 1, "runs of each tool on the 1,000,000-name zones")
	cache := flag.String("cache", filepath.Join(home, ".cache", "ods-keyguard-bench"), "where the signed zones are kept")
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	limit := flag.Duration("limit", 20*time.Minute, "longest one run may take")
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		return fatal(err)
	}
	cases := []zoneCase{{20000, "rsa", false}}
	if !*quick {
		cases = append(cases,
			zoneCase{100000, "ecdsa", false}, zoneCase{100000, "ecdsa", true},
			zoneCase{100000, "rsa", false}, zoneCase{100000, "rsa", true},
			zoneCase{1000000, "ecdsa", false}, zoneCase{1000000, "ecdsa", true},
			zoneCase{1000000, "rsa", false}, zoneCase{1000000, "rsa", true})
	}
	ctx := context.Background()
	var body strings.Builder
	fmt.Fprintf(&body, "## Reviewing signed zones: zonereview beside the validators\n\n")
	fmt.Fprintf(&body, "Run %s, `make bench-review` (internal/lab/zonebench).\n\n", machine())
	fmt.Fprintf(&body, "Tools: %s.\n\n", strings.Join(versions(), "; "))
	fmt.Fprintf(&body, "Zones of N names with an A record each (plus the apex and two name servers), signed by dnssec-signzone with a KSK and a ZSK\n"+
		"(`-S -n 2`, NSEC3: `-3 - -H 0`), in its default sorted output. Each tool checks the whole file: zonereview as `zonebench review`\n"+
		"(signatures, validity, NSEC/NSEC3 chain), validns with `-n 2`, kzonecheck with `-d on`, ldns-verify-zone and dnssec-verify with defaults.\n"+
		"Wall: the median and the best of the runs; CPU: user and system time, the median; peak RSS: the largest maximum resident set of them (wait4 rusage), and its ratio to the file's size.\n"+
		"The last column is zonereview's median over the tool's: below 1, zonereview is faster. Zones up to 100,000 names run %d times,\n"+
		"1,000,000-name zones %d time(s), the tools interleaved run by run. Other developers use the machine too: the load average says how much.\n\n", *runs, *bigRuns)
	for _, c := range cases {
		file, _, err := c.signed(ctx, *cache)
		if err != nil {
			return fatal(err)
		}
		st, err := os.Stat(file)
		if err != nil {
			return fatal(err)
		}
		n := *runs
		if c.names >= 1000000 {
			n = *bigRuns
		}
		before := loadavg()
		results := measureCase(self, file, n, *limit)
		body.WriteString(table(c, st.Size(), c.signingTime(*cache), before+" before, "+loadavg()+" after", results))
	}
	if err := writeSection(*out, "zonereview", body.String()); err != nil {
		return fatal(err)
	}
	fmt.Fprintf(os.Stderr, "zonebench: wrote %s\n", *out)
	return 0
}

func measureCase(self, file string, runs int, limit time.Duration) []*result {
	ts := tools()
	results := make([]*result, len(ts))
	for i, t := range ts {
		results[i] = &result{tool: t.name}
	}
	for r := 0; r < runs; r++ {
		for i, t := range ts {
			res := results[i]
			if strings.HasPrefix(res.status, "stopped") {
				continue
			}
			wall, cpu, rss, err := measure(t.argv(self, file), limit)
			fmt.Fprintf(os.Stderr, "zonebench: %s: %s: %s %.1f MiB %v\n", filepath.Base(filepath.Dir(file)), t.name, wall.Round(time.Millisecond), float64(rss)/1024, err)
			if errors.Is(err, context.DeadlineExceeded) {
				res.status = "stopped after " + limit.String()
				continue
			}
			if err != nil {
				res.status = "fails: " + oneLine(err.Error())
				if !t.failOK {
					continue
				}
			}
			res.walls = append(res.walls, wall)
			res.rss = append(res.rss, rss)
			res.cpu = append(res.cpu, cpu)
		}
	}
	return results
}

// measure runs argv once: wall time, CPU time (user and system) and the
// peak resident memory in KiB.
func measure(argv []string, limit time.Duration) (time.Duration, time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &capped{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return wall, 0, 0, ctx.Err()
	}
	var rss int64
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
	}
	if err != nil {
		return wall, cpu, rss, fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
	}
	return wall, cpu, rss, nil
}

// capped keeps the start of a tool's output: validns says the same of
// every signature it cannot check.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// loadavg is the machine's load average over the last minute.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return strings.ReplaceAll(s, "|", "/")
}

func median(v []time.Duration) time.Duration {
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func table(c zoneCase, size int64, signing, load string, results []*result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", c)
	fmt.Fprintf(&b, "Signed zone: %.1f MB; dnssec-signzone took %s. Load average (1 min): %s.\n\n", float64(size)/1e6, signing, load)
	b.WriteString("| tool | runs | median wall | best wall | median CPU | peak RSS | RSS / file | zonereview's median / tool's | verdict |\n|---|---|---|---|---|---|---|---|---|\n")
	var ref time.Duration
	if len(results[0].walls) > 0 {
		ref = median(results[0].walls)
	}
	for _, r := range results {
		verdict := "passes"
		if r.status != "" {
			verdict = r.status
		}
		if len(r.walls) == 0 {
			fmt.Fprintf(&b, "| %s | 0 | - | - | - | - | - | - | %s |\n", r.tool, verdict)
			continue
		}
		m := median(r.walls)
		best := r.walls[0]
		for _, w := range r.walls {
			best = min(best, w)
		}
		var peak int64
		for _, x := range r.rss {
			peak = max(peak, x)
		}
		ratio := "-"
		if r.tool != "zonereview" && ref > 0 {
			ratio = fmt.Sprintf("%.2f", float64(ref)/float64(m))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1f MiB | %.2f | %s | %s |\n", r.tool, len(r.walls), m.Round(time.Millisecond), best.Round(time.Millisecond),
			median(r.cpu).Round(time.Millisecond), float64(peak)/1024, float64(peak)*1024/float64(size), ratio, verdict)
	}
	b.WriteString("\n")
	return b.String()
}

func fatal(err error) int {
	fmt.Fprintf(os.Stderr, "zonebench: %v\n", err)
	return 1
}

// machine says when and where: the date, the CPU, its cores and memory.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "unknown memory"
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		mem = fmt.Sprintf("%.1f GiB", float64(si.Totalram)*float64(si.Unit)/(1<<30))
	}
	return fmt.Sprintf("%s on %s, %d cores, %s (%s/%s, %s)", time.Now().UTC().Format("2006-01-02 15:04 MST"), cpu, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// versions asks each tool for its version.
func versions() []string {
	ask := func(argv ...string) string {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		if line == "" {
			return argv[0] + " (version unknown)"
		}
		return line
	}
	v := []string{
		ask("dnssec-signzone", "-V"),
		ask("dnssec-verify", "-V"),
		ask("kzonecheck", "-V"),
		ask("ldns-verify-zone", "-v"),
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "validns").Output(); err == nil {
		v = append(v, "validns "+string(out))
	}
	return v
}

// writeSection replaces the section name of path (between its markers),
// or adds it, as internal/bench does.
func writeSection(path, name, body string) error {
	begin, end := "<!-- bench:"+name+" begin -->", "<!-- bench:"+name+" end -->"
	section := begin + "\n" + body + end + "\n"
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(old)
	if i, j := strings.Index(text, begin), strings.Index(text, end); i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end)+1:]
	} else {
		text += "\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
