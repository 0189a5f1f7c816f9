package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

func runTool(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// make install puts the binary beside OpenDNSSEC's admin tools, the two
// hook names as links to it, the example configuration, and state_dir;
// make uninstall takes them away (state_dir and its history stay). Nothing
// is written into the source tree.
func TestMakeInstall(t *testing.T) {
	sandbox.NeedTools(t, "make")
	dest, build := t.TempDir(), t.TempDir()
	vars := []string{"DESTDIR=" + dest, "PREFIX=/usr", "BUILD=" + build}
	runTool(t, ".", nil, "make", append([]string{"install"}, vars...)...)
	sbin := filepath.Join(dest, "usr/sbin")
	if fi, err := os.Stat(filepath.Join(sbin, "ods-keyguard")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("binary: %v", err)
	}
	for _, hook := range []string{"ods-keyguard-ds-submit", "ods-keyguard-ds-retract", "ods-keyguard-publish"} {
		if target, err := os.Readlink(filepath.Join(sbin, hook)); err != nil || target != "ods-keyguard" {
			t.Errorf("%s: link to %q, %v", hook, target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/share/doc/ods-keyguard/conf.toml.example")); err != nil {
		t.Errorf("example configuration: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "var/lib/opendnssec/keyguard")); err != nil || fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm() != 0o750 {
		t.Errorf("state_dir: %v %v", fi.Mode(), err)
	}
	// The installed hook name dispatches to the hook: with no config it withholds.
	cmd := exec.Command(filepath.Join(sbin, "ods-keyguard-ds-submit"))
	cmd.Env = append(os.Environ(), "ODS_KEYGUARD_CONFIG="+filepath.Join(dest, "none.toml"), "ODS_KEYGUARD_SYSLOG=")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "ds-submit: withheld everything: config") {
		t.Errorf("installed hook: %v: %s", err, out)
	}
	runTool(t, ".", nil, "make", append([]string{"uninstall"}, vars...)...)
	for _, f := range []string{"ods-keyguard", "ods-keyguard-ds-submit", "ods-keyguard-ds-retract", "ods-keyguard-publish"} {
		if _, err := os.Lstat(filepath.Join(sbin, f)); err == nil {
			t.Errorf("%s still there after uninstall", f)
		}
	}
	if _, err := os.Stat("bin/ods-keyguard"); err == nil {
		if fi, _ := os.Stat("bin/ods-keyguard"); fi.ModTime().After(startTime) {
			t.Error("make install wrote bin/ods-keyguard into the source tree")
		}
	}
}

// debOnce builds the package once for the tests that look at it.
var debOnce struct {
	sync.Once
	dir, deb string
	err      error
}

// removeDeb removes what buildDeb made, after all the tests (TestMain).
func removeDeb() {
	if debOnce.dir != "" {
		os.RemoveAll(debOnce.dir)
	}
}

// buildDeb runs make deb into a folder of its own and returns the .deb.
func buildDeb(t *testing.T) string {
	t.Helper()
	sandbox.NeedTools(t, "make", "dpkg-deb")
	debOnce.Do(func() {
		dist, err := os.MkdirTemp("", "ods-keyguard-deb")
		if err != nil {
			debOnce.err = err
			return
		}
		debOnce.dir = dist
		out, err := exec.Command("make", "-s", "deb", "DIST="+dist).CombinedOutput()
		debs, _ := filepath.Glob(filepath.Join(dist, "ods-keyguard_*_*.deb"))
		if err != nil || len(debs) != 1 || !strings.Contains(string(out), debs[0]) {
			debOnce.err = fmt.Errorf("make deb: %v: made %v\n%s", err, debs, out)
			return
		}
		debOnce.deb = debs[0]
	})
	if debOnce.err != nil {
		t.Fatal(debOnce.err)
	}
	return debOnce.deb
}

// make deb builds a package that lintian accepts even pedantically, with
// md5sums and the hardening flags, that installs every path into a scratch
// root with its postinst, and whose plugin link runs check.
func TestDebianPackage(t *testing.T) {
	sandbox.NeedTools(t, "lintian", "systemd-analyze", "man", "bash")
	deb := buildDeb(t)
	// Every tag, info and pedantic ones included, is a finding.
	l := runTool(t, ".", nil, "lintian", "-I", "-E", "--pedantic", "--tag-display-limit", "0", deb)
	// As root (CI), lintian says so on stderr: not a finding.
	l = strings.Replace(l, "running with root privileges is not recommended!\n", "", 1)
	if strings.TrimSpace(l) != "" {
		t.Errorf("lintian -I -E --pedantic:\n%s", l)
	}
	root := t.TempDir()
	runTool(t, ".", nil, "dpkg-deb", "-x", deb, root)
	control := t.TempDir()
	runTool(t, ".", nil, "dpkg-deb", "-e", deb, control)
	runTool(t, ".", []string{"DPKG_ROOT=" + root}, filepath.Join(control, "postinst"), "configure")
	for path, want := range map[string]string{
		"usr/sbin/ods-keyguard":                                           "file",
		"usr/sbin/ods-keyguard-ds-submit":                                 "-> ods-keyguard",
		"usr/sbin/ods-keyguard-ds-retract":                                "-> ods-keyguard",
		"usr/sbin/ods-keyguard-publish":                                   "-> ods-keyguard",
		"usr/share/man/man8/ods-keyguard-publish.8.gz":                    "-> ods-keyguard.8.gz",
		"lib/systemd/system/ods-keyguard-publish-release.service":         "ExecStart=/usr/sbin/ods-keyguard publish release -t 240",
		"lib/systemd/system/ods-keyguard-publish-release.timer":           "OnUnitActiveSec=5min",
		"usr/lib/nagios/plugins/check_ods_keyguard":                       "-> ../../../sbin/ods-keyguard",
		"etc/nagios-plugins/config/ods-keyguard.cfg":                      "check_ods_keyguard_spare_sudo",
		"usr/share/icinga2/include/plugins-contrib.d/ods-keyguard.conf":   `object CheckCommand "ods_keyguard"`,
		"usr/share/man/man8/ods-keyguard.8.gz":                            "file",
		"usr/share/man/man5/keyguard.toml.5.gz":                           "file",
		"usr/share/man/man8/ods-keyguard-ds-submit.8.gz":                  "-> ods-keyguard.8.gz",
		"usr/share/bash-completion/completions/ods-keyguard":              "_ods_keyguard_flags",
		"lib/systemd/system/ods-keyguard-textfile.service":                "SuccessExitStatus=1 2",
		"lib/systemd/system/ods-keyguard-textfile.timer":                  "OnUnitActiveSec=5min",
		"lib/systemd/system/ods-keyguard-parent-sync.service":             "ExecStart=/usr/sbin/ods-keyguard parent sync -t 120",
		"lib/systemd/system/ods-keyguard-parent-sync.timer":               "OnUnitActiveSec=10min",
		"lib/systemd/system/ods-keyguard-scan.service":                    "ExecStart=/usr/sbin/ods-keyguard scan -t 600",
		"lib/systemd/system/ods-keyguard-scan.timer":                      "OnUnitActiveSec=5min",
		"usr/share/doc/ods-keyguard/README.md.gz":                         "file",
		"usr/share/doc/ods-keyguard/CONTRIBUTING.md.gz":                   "file",
		"usr/share/doc/ods-keyguard/docs/operations.md.gz":                "file",
		"usr/share/doc/ods-keyguard/docs/ds-lifecycle.md.gz":              "file",
		"usr/share/doc/ods-keyguard/docs/monitoring.md.gz":                "file",
		"usr/share/doc/ods-keyguard/docs/recovery.md.gz":                  "file",
		"usr/share/doc/ods-keyguard/docs/ledger.md.gz":                    "file",
		"usr/share/doc/ods-keyguard/docs/pkcs11.md.gz":                    "file",
		"usr/share/doc/ods-keyguard/examples/keyguard.toml":               "state_dir",
		"usr/share/doc/ods-keyguard/examples/sudoers":                     "NOPASSWD: /usr/lib/nagios/plugins/check_ods_keyguard -t 10",
		"usr/share/doc/ods-keyguard/examples/nrpe.cfg":                    "command[check_ods_keyguard]=/usr/lib/nagios/plugins/check_ods_keyguard --sudo -t 10",
		"usr/share/doc/ods-keyguard/examples/ds-forward-nsupdate":         "usage: ds-forward-nsupdate add|delete SERVER [PORT]",
		"usr/share/doc/ods-keyguard/schema/check.json":                    "ods-keyguard/check/1",
		"usr/share/doc/ods-keyguard/examples/ods-keyguard.rules.yml":      "absent(ods_keyguard_up)",
		"usr/share/doc/ods-keyguard/examples/ods-keyguard.rules.test.yml": "rule_files",
		"usr/share/doc/ods-keyguard/copyright":                            "BSD-2-clause",
		"usr/share/doc/ods-keyguard/changelog.gz":                         "file",
		"var/lib/opendnssec/keyguard":                                     "dir",
	} {
		p := filepath.Join(root, path)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		switch {
		case strings.HasPrefix(want, "-> "):
			if target, _ := os.Readlink(p); "-> "+target != want {
				t.Errorf("%s: links to %q, want %s", path, target, want)
			}
		case want == "dir":
			if !fi.IsDir() || fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm() != 0o750 {
				t.Errorf("%s: %v, want a setgid folder 2750", path, fi.Mode())
			}
		case want == "file":
			if !fi.Mode().IsRegular() || fi.Size() == 0 {
				t.Errorf("%s: %v", path, fi.Mode())
			}
		default:
			if b, _ := os.ReadFile(p); !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s does not say %q", path, want)
			}
		}
	}
	// The shipped binary has no failpoint: a stripped Go binary keeps its
	// function names (pclntab), so the bytes tell; and the same build
	// unstripped has no such symbol (go tool nm).
	if b, err := os.ReadFile(filepath.Join(root, "usr/sbin/ods-keyguard")); err != nil {
		t.Error(err)
	} else {
		for _, s := range []string{"internal/failpoint", "ODS_KEYGUARD_FAILPOINT"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("usr/sbin/ods-keyguard holds %q: test machinery in the release binary", s)
			}
		}
	}
	plain := filepath.Join(t.TempDir(), "ods-keyguard")
	runTool(t, ".", nil, "go", "build", "-o", plain, ".")
	if nm := runTool(t, ".", nil, "go", "tool", "nm", plain); strings.Contains(nm, "failpoint") {
		t.Errorf("go tool nm of a release build names a failpoint symbol")
	}
	// md5sums lists every file but the conffile, and they match.
	sums, err := os.ReadFile(filepath.Join(control, "md5sums"))
	if err != nil || !bytes.Contains(sums, []byte("  usr/sbin/ods-keyguard\n")) || bytes.Contains(sums, []byte(" etc/")) {
		t.Errorf("md5sums: %v\n%s", err, sums)
	}
	check := exec.Command("md5sum", "--check", "--quiet", filepath.Join(control, "md5sums"))
	check.Dir = root
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("md5sum --check: %v\n%s", err, out)
	}
	// One version: the package's is what --version and check -V print.
	pkgVersion := strings.TrimSpace(runTool(t, ".", nil, "dpkg-deb", "-f", deb, "Version"))
	if v := runTool(t, ".", nil, filepath.Join(root, "usr/sbin/ods-keyguard"), "--version"); v != "ods-keyguard version "+pkgVersion+"\n" {
		t.Errorf("--version: %q, package %q", v, pkgVersion)
	}
	// The plugin link is check: -V and -h as the plugin guidelines ask.
	plugin := filepath.Join(root, "usr/lib/nagios/plugins/check_ods_keyguard")
	if v := runTool(t, ".", nil, plugin, "-V"); v != "check_ods_keyguard (ods-keyguard) "+pkgVersion+"\n" {
		t.Errorf("-V: %q", v)
	}
	if h := runTool(t, ".", nil, plugin, "-h"); !strings.Contains(h, "monitoring plugin") || !strings.Contains(h, "--critical-spare RANGE, -c RANGE") {
		t.Errorf("-h: %q", h)
	}
	cmd := exec.Command(plugin, "--config", filepath.Join(root, "none.toml"))
	o, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.HasPrefix(string(o), "KEYGUARD UNKNOWN - config ") {
		t.Errorf("the plugin without a configuration: %v %q", err, o)
	}
	// The man pages as man formats them: no warning.
	for _, page := range []string{"usr/share/man/man8/ods-keyguard.8.gz", "usr/share/man/man5/keyguard.toml.5.gz"} {
		c := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", filepath.Join(root, page))
		c.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_DISABLE_SECCOMP=1")
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil || stderr.Len() > 0 || !bytes.Contains(stdout.Bytes(), []byte("SEE ALSO")) {
			t.Errorf("man --warnings -l %s: %v\n%s", page, err, stderr.String())
		}
	}
	// Completion, through bash's compgen, of every command's flags.
	testCompletion(t, filepath.Join(root, "usr/share/bash-completion/completions/ods-keyguard"))
	// The units are valid systemd units; the alert rules valid Prometheus
	// rules whose every alert is tested.
	units := filepath.Join(root, "lib/systemd/system")
	// The unit runs /bin/mkdir, which the scratch root lacks: lend it.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, ".", nil, "cp", "/bin/mkdir", filepath.Join(root, "bin/mkdir"))
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--recursive-errors=no", "--root="+root,
		filepath.Join(units, "ods-keyguard-textfile.service"), filepath.Join(units, "ods-keyguard-textfile.timer"),
		filepath.Join(units, "ods-keyguard-parent-sync.service"), filepath.Join(units, "ods-keyguard-parent-sync.timer"),
		filepath.Join(units, "ods-keyguard-publish-release.service"), filepath.Join(units, "ods-keyguard-publish-release.timer")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("promtool"); err == nil || strictTools {
		examples := filepath.Join(root, "usr/share/doc/ods-keyguard/examples")
		runTool(t, ".", nil, "promtool", "check", "rules", filepath.Join(examples, "ods-keyguard.rules.yml"))
		runTool(t, examples, nil, "promtool", "test", "rules", "ods-keyguard.rules.test.yml")
	}
}

// testCompletion sources the completion script in bash and completes
// "ods-keyguard CMD --" for every command: every visible flag is offered,
// and nothing runs the program.
func testCompletion(t *testing.T, script string) {
	t.Helper()
	var cases []string
	var want [][]string
	var walk func(path string, cmds []*cli.Command, flags []cli.Flag)
	walk = func(path string, cmds []*cli.Command, flags []cli.Flag) {
		var names []string
		for _, f := range flags {
			if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				if len(n) > 1 {
					names = append(names, "--"+n)
				}
			}
		}
		cases = append(cases, path)
		want = append(want, names)
		for _, c := range cmds {
			if !c.Hidden {
				walk(path+" "+c.Name, c.Subcommands, c.Flags)
			}
		}
	}
	app := newApp(nil, io.Discard, io.Discard)
	walk("ods-keyguard", app.Commands, app.Flags)
	var sh strings.Builder
	fmt.Fprintf(&sh, "source %q\n", script)
	sh.WriteString("c() { COMP_WORDS=($1 \"$2\"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _ods_keyguard; echo \"${COMPREPLY[*]}\"; }\n")
	for _, c := range cases {
		fmt.Fprintf(&sh, "c %q --\n", c)
	}
	// A flag's value is never completed by running the program: after
	// --operator nothing is offered, after --config file names are.
	sh.WriteString("c 'ods-keyguard backup done --operator' ''\n")
	fmt.Fprintf(&sh, "c 'ods-keyguard status --config' %q\n", script)
	sh.WriteString("c 'ods-keyguard backup' ''\n")
	sh.WriteString("c 'check_ods_keyguard' --cr\n")
	// ods-keyguard is not on PATH here: completing must not need it.
	c := exec.Command("bash", "--norc", "--noprofile", "-c", sh.String())
	c.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(cases)+4 {
		t.Fatalf("completion printed %d lines for %d cases:\n%s", len(lines), len(cases)+4, out)
	}
	for i, c := range cases {
		got := " " + lines[i] + " "
		for _, f := range want[i] {
			if !strings.Contains(got, " "+f+" ") {
				t.Errorf("%s --<TAB>: %q lacks %s", c, lines[i], f)
			}
		}
	}
	tail := lines[len(cases):]
	for i, w := range []string{"", script, "prepare done rollback history", "--critical-spare"} {
		if tail[i] != w {
			t.Errorf("completion case %d: %q, want %q", i, tail[i], w)
		}
	}
}

// tomlKeys lists the keys of a configuration struct: "hooks.timeout".
func tomlKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("toml")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(f.Type, prefix)...)
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Map || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			if ft.Kind() == reflect.Map && ft.Elem().Kind() != reflect.Struct {
				break
			}
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(ft, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// The shipped alerting rules pass promtool's own unit tests, and every
// alert has one.
func TestPrometheusRules(t *testing.T) {
	sandbox.NeedTools(t, "promtool")
	runTool(t, "packaging", nil, "promtool", "test", "rules", "ods-keyguard.rules.test.yml")
	rules, err := os.ReadFile("packaging/ods-keyguard.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("packaging/ods-keyguard.rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\S+)$`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts in the rules")
	}
	for _, a := range alerts {
		fire := regexp.MustCompile(`(?m)^\s+alertname: ` + a[1] + `\n\s+exp_alerts:\n\s+- exp_labels:`)
		quiet := regexp.MustCompile(`(?m)^\s+alertname: ` + a[1] + `\n\s+exp_alerts: \[\]`)
		if !fire.Match(tests) || !quiet.Match(tests) {
			t.Errorf("alert %s: the tests need a case where it fires and one where it does not", a[1])
		}
	}
}

// The package installs into a real root: a chroot onto an overlay of this
// host's root in a mount namespace of its own, so the host stays as it
// was. There dpkg -i, debsums, dpkg -r refused while conf.xml names the
// hooks (with the timer enabled and its textfile written), dpkg -r and
// dpkg -P, as testdata/package/install.sh asserts step by step. systemd
// does not run in the chroot: the daemon-reload and stop are not exercised.
func TestDebianPackageInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		sandbox.Missing(t, "needs root (a mount namespace, an overlay, chroot)")
	}
	sandbox.NeedTools(t, "unshare", "chroot", "mount", "setpriv", "dpkg", "debsums", "perl", "sudo", "visudo")
	deb := buildDeb(t)
	dir := t.TempDir()
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	pkg := filepath.Join(upper, "tmp/pkg")
	for _, d := range []string{pkg, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, ".", nil, "cp", deb, filepath.Join(pkg, "ods-keyguard.deb"))
	runTool(t, ".", nil, "cp", "testdata/package/install.sh", filepath.Join(pkg, "install.sh"))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec",
		`mount -t overlay overlay -o "lowerdir=/,upperdir=$1,workdir=$2" "$3"
		mount --rbind /dev "$3/dev"
		mount -t proc proc "$3/proc"
		exec chroot "$3" /bin/sh /tmp/pkg/install.sh`, "sh", upper, work, merged)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("install.sh in the chroot: %v", err)
	}
	for _, want := range []string{
		"installed: install ok installed ",
		"version: ods-keyguard version " + strings.TrimSpace(runTool(t, ".", nil, "dpkg-deb", "-f", deb, "Version")) + "\n",
		"debsums: clean\n",
		"sudo route: 3 KEYGUARD UNKNOWN - config /etc/opendnssec/keyguard.toml: unknown key \"marker\"\n",
		"sudo refused: 3 KEYGUARD UNKNOWN - sudo -n /usr/lib/nagios/plugins/check_ods_keyguard: sudo: a password is required\n",
		"refused: /srv/ods/conf.xml\n",
		"refused: /srv/ods2/conf.xml\n",
		"refused: the publish gate\n",
		"removed: deinstall ok config-files\n",
		"state_dir kept: history.json\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("install.sh did not say %q", want)
		}
	}
}
