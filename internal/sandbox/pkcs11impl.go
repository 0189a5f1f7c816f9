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
