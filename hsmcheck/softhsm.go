package hsmcheck

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// softHSMConf is SoftHSMv2's configuration file when SOFTHSM2_CONF is unset.
const softHSMConf = "/etc/softhsm/softhsm2.conf"

// isSoftHSM says whether module is SoftHSMv2, by its file name.
func isSoftHSM(module string) bool {
	return strings.Contains(strings.ToLower(filepath.Base(module)), "softhsm")
}

// mayBeSoftHSM says whether t's module is SoftHSMv2 by its name, or may be
// behind a wrapper: a SoftHSMv2 configuration is in reach of its reader.
func mayBeSoftHSM(t Token) bool {
	if isSoftHSM(t.Module) {
		return true
	}
	conf := t.Env["SOFTHSM2_CONF"]
	if conf == "" {
		conf = os.Getenv("SOFTHSM2_CONF")
	}
	if conf == "" {
		conf = softHSMConf
	}
	_, err := os.Stat(conf)
	return err == nil
}

// softHSMTokenDir is SoftHSMv2's token folder (directories.tokendir) in
// the configuration this process's environment names, or "" with a hint
// when the configuration cannot be read.
func softHSMTokenDir() (dir, hint string) {
	conf := os.Getenv("SOFTHSM2_CONF")
	if conf == "" {
		conf = softHSMConf
	}
	f, err := os.Open(conf)
	if err != nil {
		if os.IsPermission(err) {
			return "", fmt.Sprintf("SoftHSMv2 cannot read its configuration %s: %s", conf, perm.Hint(conf))
		}
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == "directories.tokendir" {
			dir = strings.TrimSpace(v)
		}
	}
	return dir, ""
}

// softHSMHint says which of SoftHSMv2's files this process may not read,
// and who could: its configuration, its token folder, or a token's folder
// (SoftHSMv2 skips a token it cannot read, so the token looks absent).
// It says nothing for another module, or when all can be read. It runs in
// the reader's process, whose environment is the token's.
func softHSMHint(module string) string {
	if !isSoftHSM(module) {
		return ""
	}
	dir, hint := softHSMTokenDir()
	if dir == "" {
		return hint
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
		if tok := filepath.Join(p, "token.object"); syscall.Access(tok, 0x4) != nil && !isNotExist(tok) {
			return fmt.Sprintf("SoftHSMv2 skips the token in %s, whose token.object this user cannot read: %s", p, perm.Hint(tok))
		}
	}
	return ""
}

// softHSMSerial is the serial number SoftHSMv2 gives the token whose folder
// is named uuid: characters 19-22 and 24-35 of the UUID.
func softHSMSerial(uuid string) string {
	if len(uuid) != 36 || uuid[23] != '-' {
		return ""
	}
	return uuid[19:23] + uuid[24:]
}

// unreadableObjects is an error when this process cannot read some of the
// object files of the SoftHSMv2 token with serial: SoftHSMv2 skips an
// object file it cannot open, so the key on it would look missing, and
// PKCS#11 cannot tell that from a key that is gone. SoftHSMv2 makes each
// object file 0600 whatever the umask, so a monitoring user that reads
// the token as a group member loses sight of every key made since the last
// chmod. Nil for another module, for root, or when the folder cannot be
// listed (softHSMHint speaks of that). Without a folder named for serial,
// every token folder is looked at: a wrong UNKNOWN costs less than a wrong
// "missing". denied, when not nil, is what the copy of the tokens found
// (by token folder name) as it read every object file, and nothing is
// looked at again.
func unreadableObjects(softhsm bool, serial string, denied map[string][]string) error {
	if !softhsm || os.Geteuid() == 0 {
		return nil
	}
	dir, _ := softHSMTokenDir()
	if dir == "" {
		return nil
	}
	var names []string
	if denied != nil {
		names = slices.Sorted(maps.Keys(denied))
	} else {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil
		}
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	for _, name := range names {
		if serial != "" && softHSMSerial(name) == serial {
			names = []string{name}
			break
		}
	}
	for _, name := range names {
		folder := filepath.Join(dir, name)
		bad, ok := denied[name]
		if !ok {
			files, err := os.ReadDir(folder)
			if err != nil {
				continue
			}
			for _, f := range files {
				if f.IsDir() || !strings.HasSuffix(f.Name(), ".object") {
					continue
				}
				// R_OK; a file deleted meanwhile is no longer a key.
				if err := syscall.Access(filepath.Join(folder, f.Name()), 0x4); err != nil && !os.IsNotExist(err) {
					bad = append(bad, f.Name())
				}
			}
		}
		if len(bad) == 0 {
			continue
		}
		names := strings.Join(bad, ", ")
		if len(bad) > 3 {
			names = fmt.Sprintf("%s, +%d more", strings.Join(bad[:3], ", "), len(bad)-3)
		}
		hint := perm.Hint(filepath.Join(folder, bad[0]))
		if rest, ok := strings.CutSuffix(hint, "chmod g+rX "+filepath.Join(folder, bad[0])); ok {
			hint = rest + "chmod g+r " + folder + "/*.object"
		}
		return fmt.Errorf("cannot read %s in token folder %s (%s), whose keys SoftHSMv2 then skips: %s",
			human.Count(len(bad), "object file"), folder, names, strings.Replace(hint, "needs read access to it", "needs read access to them", 1))
	}
	return nil
}

// withSoftHSMHint adds softHSMHint's finding to msg, if it has one.
func withSoftHSMHint(msg, module string) string {
	if h := softHSMHint(module); h != "" {
		return msg + "; " + h
	}
	return msg
}

// isNotExist says whether path is not there at all.
func isNotExist(path string) bool {
	_, err := os.Lstat(path)
	return os.IsNotExist(err)
}
