package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// benchBackends measures verify and check on the same token and the same
// enforcer state, read once from SQLite (the files ledger) and once from
// MySQL (the MySQL ledger), in one run: the enforcer makes about n keys
// in kasp.db, which is then copied row by row into a sandboxed MariaDB,
// and the ceremony that covers them is migrated into a MySQL ledger.
func benchBackends(bin string, n, runs int) (string, error) {
	dir, e, keys, gen, err := generate(n)
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	if err != nil {
		return "", err
	}
	e.Close()
	defer sandbox.StopShared()

	// The same state in MariaDB, and a conf.xml that points there.
	srv, err := sandbox.SharedMariaDB()
	if err != nil {
		return "", err
	}
	kasp, err := srv.NewDatabase("kasp")
	if err != nil {
		return "", err
	}
	if err := kasp.LoadEnforcerSchema(); err != nil {
		return "", err
	}
	if err := sandbox.CopyKasp(e.DB, kasp); err != nil {
		return "", err
	}
	xml, err := os.ReadFile(e.Conf)
	if err != nil {
		return "", err
	}
	mysqlXML := regexp.MustCompile(`<Datastore>.*</Datastore>`).ReplaceAllString(string(xml),
		fmt.Sprintf(`<Datastore><MySQL><Host Port="%d">127.0.0.1</Host><Database>%s</Database><Username>%s</Username><Password>%s</Password></MySQL></Datastore>`,
			srv.Port, kasp.Name, kasp.User, kasp.Password))
	mysqlConf := filepath.Join(dir, "ods", "conf-mysql.xml")
	if err := os.WriteFile(mysqlConf, []byte(mysqlXML), 0o600); err != nil {
		return "", err
	}
	led, err := srv.NewDatabase("keyguard")
	if err != nil {
		return "", err
	}
	pw := filepath.Join(dir, "ledger.pw")
	if err := os.WriteFile(pw, []byte(led.Password+"\n"), 0o600); err != nil {
		return "", err
	}
	lite := filepath.Join(dir, "lite.toml")
	my := filepath.Join(dir, "mysql.toml")
	migrate := filepath.Join(dir, "migrate.toml")
	ledger := fmt.Sprintf("[ledger]\nbackend = %%q\ndsn = %q\npassword_file = %q\n", led.DSN(), pw)
	files := map[string]string{
		lite:    fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n", e.Conf, filepath.Join(dir, "state")),
		migrate: fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n", e.Conf, filepath.Join(dir, "state-copy")) + fmt.Sprintf(ledger, "files"),
		my:      fmt.Sprintf("opendnssec_conf = %q\nstate_dir = %q\n", mysqlConf, filepath.Join(dir, "state-copy")) + fmt.Sprintf(ledger, "mysql"),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return "", err
		}
	}
	// One ceremony covers every key; the MySQL ledger gets it by migration.
	steps := [][]string{
		{"--config", lite, "backup", "prepare"},
		{"--config", lite, "backup", "done"},
	}
	for _, args := range steps {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "state"), filepath.Join(dir, "state-copy")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command(bin, "--config", migrate, "ledger", "migrate", "--to", "mysql").CombinedOutput(); err != nil {
		return "", fmt.Errorf("ledger migrate: %v: %s", err, out)
	}

	type job struct{ name, backend, ref string }
	var jobs []job
	argv := map[job][]string{}
	for _, cmd := range []struct{ name, args string }{{"verify", "verify"}, {"check", "check -t 600"}} {
		l := job{"ods-keyguard " + cmd.name, "SQLite, files ledger", ""}
		m := job{"ods-keyguard " + cmd.name, "MySQL (MariaDB), MySQL ledger", ""}
		m.ref = l.name + "|" + l.backend
		argv[l] = append([]string{bin, "--config", lite}, strings.Fields(cmd.args)...)
		argv[m] = append([]string{bin, "--config", my}, strings.Fields(cmd.args)...)
		jobs = append(jobs, l, m)
	}
	walls := map[job][]time.Duration{}
	rss := map[job][]int64{}
	// Interleaved, so that neither backend gets the warmer cache.
	for i := 0; i < runs; i++ {
		for _, j := range jobs {
			wall, kib, err := measure(argv[j], "", 10*time.Minute)
			if err != nil {
				return "", fmt.Errorf("%s (%s): %w", j.name, j.backend, err)
			}
			walls[j] = append(walls[j], wall)
			rss[j] = append(rss[j], kib)
			fmt.Fprintf(os.Stderr, "bench: %s (%s): %s\n", j.name, j.backend, wall.Round(time.Millisecond))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %d keys on one SoftHSMv2 token, the same enforcer state in SQLite and in MariaDB\n\n", keys)
	fmt.Fprintf(&b, "The SQLite enforcer generated them in %s; kasp.db was copied row by row into MariaDB %s (sandboxed, 127.0.0.1); one confirmed ceremony covers every key, in state_dir and, migrated, in the MySQL ledger.\n\n", gen.Round(time.Second), mariadbVersion())
	b.WriteString("| command | backend | runs | median wall | peak RSS | vs SQLite |\n|---|---|---|---|---|---|\n")
	for _, j := range jobs {
		m := median(walls[j])
		ratio := "reference"
		if j.ref != "" {
			parts := strings.SplitN(j.ref, "|", 2)
			ref := job{parts[0], parts[1], ""}
			ratio = fmt.Sprintf("%.2fx", float64(m)/float64(median(walls[ref])))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %d | %s | %.1f MiB | %s |\n", j.name, j.backend, len(walls[j]), m.Round(time.Millisecond), float64(median(rss[j]))/1024, ratio)
	}
	return b.String(), nil
}

func mariadbVersion() string {
	out, err := exec.Command("mariadbd", "--version").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "Ver" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func writeBackends(path, binary, table string) error {
	header := "## SQLite and MySQL backends: verify and check\n\nRun %s, `make bench-backends`, %s.\nMedian of the runs, the two backends interleaved; peak RSS is the process's maximum resident set.\nBoth read the same token; they differ only in where the enforcer's state and ods-keyguard's ledger are read from.\n\n"
	return writeSection(path, "backends", fmt.Sprintf(header, machine(), version(binary))+table)
}
