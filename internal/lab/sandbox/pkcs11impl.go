package sandbox

// PKCS#11 implementations besides SoftHSMv2, for the tests: NSS softoken,
// through a small wrapper module the harness builds (p11wrap.c), and the
// same wrapper around any module to count the logins a token saw.

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

//go:embed csrc/p11wrap.c
var p11wrapSource []byte

// NSSModule finds NSS softoken's module (package libnss3).
func NSSModule() (string, error) {
	for _, pat := range []string{"/usr/lib/*/libsoftokn3.so", "/usr/lib/libsoftokn3.so", "/usr/lib/*/nss/libsoftokn3.so"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("libsoftokn3.so not found (package libnss3)")
}

// BuildWrapper compiles p11wrap.c into dir/p11wrap.so with gcc and returns
// its path. The wrapper passes every call to $P11WRAP_MODULE; with
// $P11WRAP_NSS_DIR it initializes NSS softoken on that folder; with
// $P11WRAP_LOG it appends a line per C_Login (user type, return value).
func BuildWrapper(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(dir, "p11wrap.c")
	so := filepath.Join(dir, "p11wrap.so")
	if err := os.WriteFile(src, p11wrapSource, 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("gcc", "-Wall", "-O1", "-shared", "-fPIC", "-o", so, src, "-ldl", "-I/usr/include/p11-kit-1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc p11wrap.c: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return so, nil
}

// NSSEnv is the environment under which the wrapper opens the NSS token in
// folder dir with label.
func NSSEnv(nssModule, dir, label string) []string {
	return []string{"P11WRAP_MODULE=" + nssModule, "P11WRAP_NSS_DIR=" + dir, "P11WRAP_NSS_LABEL=" + label}
}

// NSSInitToken makes an NSS softoken database in dir, its password pin:
// the user PIN of the token the wrapper opens there.
func NSSInitToken(dir, pin string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pf := filepath.Join(dir, ".pin")
	if err := os.WriteFile(pf, []byte(pin+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pf)
	out, err := exec.Command("certutil", "-N", "-d", "sql:"+dir, "-f", pf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("certutil -N %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PKCS11ToolWith runs pkcs11-tool on module's token labelled label, with
// env on top of this process's environment.
func PKCS11ToolWith(module string, env []string, label, pin string, args ...string) error {
	cmd := exec.Command("pkcs11-tool", append([]string{"--module", module, "--token-label", label, "--pin", pin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pkcs11-tool: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// openCryptoki 3.8.1's soft token. Its paths are compiled in
// (/etc/opencryptoki, /var/lib/opencryptoki, /run/pkcsslotd.socket, SysV
// shared memory), so it runs only in a private mount and IPC namespace
// (unshare -m -i --propagation private): the caller must already be in
// one, where StartOpenCryptoki mounts its own folders over those paths.

// OpenCryptokiModule is openCryptoki's PKCS#11 module.
const OpenCryptokiModule = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"

// OpenCryptokiSOPIN is the soft token's default security officer PIN.
const OpenCryptokiSOPIN = "87654321"

// OpenCryptoki is a running pkcsslotd with two soft token slots: slot 0,
// the HSM, and slot 1, for a backup token (its folders tok0 and tok1).
type OpenCryptoki struct {
	Dir string
	pid int
}

// StartOpenCryptoki mounts dir's folders over openCryptoki's paths, a tmpfs
// on /dev/shm, and starts pkcsslotd. Only in a private mount namespace.
func StartOpenCryptoki(dir string) (*OpenCryptoki, error) {
	if os.Getenv(OpenCryptokiNamespace) == "" {
		return nil, fmt.Errorf("openCryptoki: not in a private mount namespace (run under unshare -m -i --propagation private with %s=1)", OpenCryptokiNamespace)
	}
	for _, d := range []string{"etc", "lib/tok0/TOK_OBJ", "lib/tok1/TOK_OBJ", "lib/lite", "run/lock", "run/opencryptoki"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o770); err != nil {
			return nil, err
		}
	}
	conf := "version opencryptoki-3.1\n\nslot 0\n{\nstdll = libpkcs11_sw.so\ntokname = tok0\n}\n\nslot 1\n{\nstdll = libpkcs11_sw.so\ntokname = tok1\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "etc", "opencryptoki.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"mount", "--bind", filepath.Join(dir, "etc"), "/etc/opencryptoki"},
		{"mount", "--bind", filepath.Join(dir, "lib"), "/var/lib/opencryptoki"},
		{"mount", "--bind", filepath.Join(dir, "run"), "/run"},
		{"mount", "-t", "tmpfs", "tmpfs", "/dev/shm"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("openCryptoki: %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	o := &OpenCryptoki{Dir: dir}
	return o, o.Reset()
}

// Reset stops pkcsslotd, empties both tokens' folders and the shared
// memory, and starts pkcsslotd again: a script's tokens start from
// nothing. (C_InitToken alone leaves the objects of an earlier script
// behind on openCryptoki 3.8.1.)
func (o *OpenCryptoki) Reset() error {
	o.Stop()
	lib := filepath.Join(o.Dir, "lib")
	for _, d := range []string{"tok0", "tok1"} {
		if err := os.RemoveAll(filepath.Join(lib, d)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(lib, d, "TOK_OBJ"), 0o770); err != nil {
			return err
		}
	}
	if shm, err := filepath.Glob("/dev/shm/*"); err == nil {
		for _, f := range shm {
			os.RemoveAll(f)
		}
	}
	for _, s := range [][]string{{"chgrp", "-R", "pkcs11", lib}, {"chmod", "-R", "0770", lib}, {"pkcsslotd"}} {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("openCryptoki: %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	// pkcsslotd goes to the background, then writes its pid and socket.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/run/pkcsslotd.pid")
		_, serr := os.Stat("/run/pkcsslotd.socket")
		if err == nil && serr == nil {
			fmt.Sscan(strings.TrimSpace(string(b)), &o.pid)
			if o.pid > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("openCryptoki: pkcsslotd wrote no pid file and socket in 20 s")
		}
	}
}

// OpenCryptokiNamespace is set in the environment of a process that runs in
// the private namespace made for openCryptoki.
const OpenCryptokiNamespace = "ODS_KEYGUARD_OPENCRYPTOKI_NS"

// InitToken initializes the soft token in slot with label and user PIN
// pin, erasing what it held: each script starts from empty tokens.
func (o *OpenCryptoki) InitToken(slot int, label, pin string) error {
	c := fmt.Sprint(slot)
	cmd := exec.Command("pkcsconf", "-I", "-c", c, "-S", OpenCryptokiSOPIN)
	cmd.Stdin = strings.NewReader(label + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pkcsconf -I: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("pkcsconf", "-u", "-c", c, "-S", OpenCryptokiSOPIN, "-n", pin).CombinedOutput(); err != nil {
		return fmt.Errorf("pkcsconf -u: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CopyObjects copies the token objects and master keys of slot from into
// slot to, as a backup of the HSM onto a backup token would: to keeps its
// own label and PINs (the same user PIN is needed).
func (o *OpenCryptoki) CopyObjects(from, to int) error {
	src := filepath.Join(o.Dir, "lib", fmt.Sprintf("tok%d", from))
	dst := filepath.Join(o.Dir, "lib", fmt.Sprintf("tok%d", to))
	if err := os.RemoveAll(filepath.Join(dst, "TOK_OBJ")); err != nil {
		return err
	}
	args := []string{"-a", filepath.Join(src, "TOK_OBJ"), filepath.Join(src, "MK_USER"), filepath.Join(src, "MK_SO"), dst + "/"}
	if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("copy token objects: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The soft token keeps its object index in POSIX shared memory, made
	// from the folder by the first process that opens the token: drop it,
	// so that the next one reads the copy. (A process still holding the
	// token, such as a running enforcer, keeps its old view.)
	if err := os.Remove(fmt.Sprintf("/dev/shm/var.lib.opencryptoki.tok%d", to)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// RSAKasp is DefaultKasp with RSA 2048 keys, for openCryptoki 3.8.1, whose
// soft token makes no EC keys.
var RSAKasp = strings.NewReplacer(`<Algorithm length="256">13</Algorithm>`, `<Algorithm length="2048">8</Algorithm>`,
	"ods-keyguard sandbox", "ods-keyguard sandbox, RSA").Replace(DefaultKasp)

// Stop stops pkcsslotd and waits for it to go.
func (o *OpenCryptoki) Stop() {
	if o.pid <= 0 {
		return
	}
	defer func() { o.pid = 0; os.Remove("/run/pkcsslotd.pid"); os.Remove("/run/pkcsslotd.socket") }()
	syscall.Kill(o.pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(o.pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(o.pid, syscall.SIGKILL)
}
