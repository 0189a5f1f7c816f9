package hsmcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// softHSMConf is SoftHSMv2's configuration file when SOFTHSM2_CONF is unset.
const softHSMConf = "/etc/softhsm/softhsm2.conf"

// softHSMHint says which of SoftHSMv2's files this process may not read,
// and who could: its configuration, its token folder, or a token's folder
// (SoftHSMv2 skips a token it cannot read, so the token looks absent).
// It says nothing for another module, or when all can be read. It runs in
// the reader's process, whose environment is the token's.
func softHSMHint(module string) string {
	if !strings.Contains(strings.ToLower(filepath.Base(module)), "softhsm") {
		return ""
	}
	conf := os.Getenv("SOFTHSM2_CONF")
	if conf == "" {
		conf = softHSMConf
	}
	f, err := os.Open(conf)
	if err != nil {
		if os.IsPermission(err) {
			return fmt.Sprintf("SoftHSMv2 cannot read its configuration %s: %s", conf, perm.Hint(conf))
		}
		return ""
	}
	defer f.Close()
	dir := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == "directories.tokendir" {
			dir = strings.TrimSpace(v)
		}
	}
	if dir == "" {
		return ""
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsPermission(err) {
			return fmt.Sprintf("SoftHSMv2 cannot read its token folder %s: %s", dir, perm.Hint(dir))
		}
		return ""
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			continue
		}
		if _, err := os.ReadDir(p); err != nil && os.IsPermission(err) {
			return fmt.Sprintf("SoftHSMv2 skips the token folder %s, which this user cannot read: %s", p, perm.Hint(p))
		}
	}
	return ""
}

// withSoftHSMHint adds softHSMHint's finding to msg, if it has one.
func withSoftHSMHint(msg, module string) string {
	if h := softHSMHint(module); h != "" {
		return msg + "; " + h
	}
	return msg
}
