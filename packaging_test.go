package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/internal/sandbox"
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
	for _, hook := range []string{"ods-keyguard-ds-submit", "ods-keyguard-ds-retract"} {
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
	for _, f := range []string{"ods-keyguard", "ods-keyguard-ds-submit", "ods-keyguard-ds-retract"} {
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

// make deb builds a package that lintian accepts, that installs every path
// into a scratch root with its postinst, and whose plugin link runs check.
func TestDebianPackage(t *testing.T) {
	sandbox.NeedTools(t, "make", "dpkg-deb", "lintian", "systemd-analyze")
	dist := t.TempDir()
	out := runTool(t, ".", nil, "make", "-s", "deb", "DIST="+dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "ods-keyguard_*_*.deb"))
	if len(debs) != 1 || !strings.Contains(out, debs[0]) {
		t.Fatalf("made %v (%s)", debs, out)
	}
	deb := debs[0]
	if l := runTool(t, ".", nil, "lintian", "--tag-display-limit", "0", deb); strings.Contains(l, "E: ") || strings.Contains(l, "W: ") {
		t.Errorf("lintian:\n%s", l)
	}
	root := t.TempDir()
	runTool(t, ".", nil, "dpkg-deb", "-x", deb, root)
	control := t.TempDir()
	runTool(t, ".", nil, "dpkg-deb", "-e", deb, control)
	runTool(t, ".", []string{"DPKG_ROOT=" + root}, filepath.Join(control, "postinst"), "configure")
	for path, want := range map[string]string{
		"usr/sbin/ods-keyguard":                                         "file",
		"usr/sbin/ods-keyguard-ds-submit":                               "-> ods-keyguard",
		"usr/sbin/ods-keyguard-ds-retract":                              "-> ods-keyguard",
		"usr/lib/nagios/plugins/check_ods_keyguard":                     "-> ../../../sbin/ods-keyguard",
		"etc/nagios-plugins/config/ods-keyguard.cfg":                    "check_ods_keyguard",
		"usr/share/icinga2/include/plugins-contrib.d/ods-keyguard.conf": `object CheckCommand "ods_keyguard"`,
		"usr/share/man/man8/ods-keyguard.8.gz":                          "file",
		"usr/share/man/man8/ods-keyguard-ds-submit.8.gz":                "-> ods-keyguard.8.gz",
		"usr/share/bash-completion/completions/ods-keyguard":            "--generate-bash-completion",
		"lib/systemd/system/ods-keyguard-textfile.service":              "SuccessExitStatus=1 2",
		"lib/systemd/system/ods-keyguard-textfile.timer":                "OnUnitActiveSec=5min",
		"usr/share/doc/ods-keyguard/examples/keyguard.toml":             "state_dir",
		"usr/share/doc/ods-keyguard/schema/check.json":                  "ods-keyguard/check/1",
		"usr/share/doc/ods-keyguard/examples/ods-keyguard.rules.yml":    "ods_keyguard_unbacked_in_use",
		"usr/share/doc/ods-keyguard/copyright":                          "BSD-2-clause",
		"usr/share/doc/ods-keyguard/changelog.gz":                       "file",
		"var/lib/opendnssec/keyguard":                                   "dir",
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
	// The plugin link is check: -V and -h as the plugin guidelines ask.
	plugin := filepath.Join(root, "usr/lib/nagios/plugins/check_ods_keyguard")
	if v := runTool(t, ".", nil, plugin, "-V"); !strings.HasPrefix(v, "check_ods_keyguard (ods-keyguard) ") {
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
	// The units are valid systemd units; the alert rules valid Prometheus rules.
	units := filepath.Join(root, "lib/systemd/system")
	// The unit runs /bin/mkdir, which the scratch root lacks: lend it.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, ".", nil, "cp", "/bin/mkdir", filepath.Join(root, "bin/mkdir"))
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--recursive-errors=no", "--root="+root,
		filepath.Join(units, "ods-keyguard-textfile.service"), filepath.Join(units, "ods-keyguard-textfile.timer")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("promtool"); err == nil || strictTools {
		runTool(t, ".", nil, "promtool", "check", "rules", filepath.Join(root, "usr/share/doc/ods-keyguard/examples/ods-keyguard.rules.yml"))
	}
}
