// Package perm explains a permission error: who owns what the process could
// not open, and what access it needs, so that an operator setting up a
// monitoring user knows what to change.
package perm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// Explain adds to err, when it is a permission error, the owner, group and
// mode of what stood in the way of path, and how to get access. Other
// errors come back as they are.
func Explain(path string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fmt.Errorf("%w: %s", err, Hint(path))
}

// Hint says what blocks access to path: the file itself, or the first
// folder on the way that the process cannot search.
func Hint(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	block := abs
	for dir := filepath.Dir(abs); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if syscall.Access(dir, 0x1) != nil { // X_OK: cannot search it
			block = dir
		}
	}
	fi, err := os.Stat(block)
	if err != nil {
		return "check its permissions and those of its folders"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "check its permissions"
	}
	owner, group := name(st.Uid, true), name(st.Gid, false)
	what := "read"
	if fi.IsDir() {
		what = "search"
	}
	where := " it"
	if block != abs {
		where = fmt.Sprintf(" the folder %s on the way", block)
	}
	mode := uint32(fi.Mode().Perm())
	if fi.Mode()&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if inGroup(st.Gid) {
		// Membership is not what is missing: the group's bits are.
		return fmt.Sprintf("%s needs %s access to%s (%s:%s, mode %04o): it is in group %s, which lacks that access: chmod g+rX %s",
			me(), what, where, owner, group, mode, group, block)
	}
	return fmt.Sprintf("%s needs %s access to%s (%s:%s, mode %04o): run as a member of group %s, or through sudo",
		me(), what, where, owner, group, mode, group)
}

// inGroup says whether this process has gid among its groups.
func inGroup(gid uint32) bool {
	if uint32(os.Getegid()) == gid {
		return true
	}
	gs, _ := os.Getgroups()
	for _, g := range gs {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}

func name(id uint32, isUser bool) string {
	s := strconv.FormatUint(uint64(id), 10)
	if isUser {
		if u, err := user.LookupId(s); err == nil {
			return u.Username
		}
		return s
	}
	if g, err := user.LookupGroupId(s); err == nil {
		return g.Name
	}
	return s
}

func me() string {
	if u, err := user.Current(); err == nil {
		return "user " + u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// User names a uid for a message: "user nagios (uid 110)", or "uid 4343"
// when no such user is known.
func User(uid int) string {
	s := strconv.Itoa(uid)
	if u, err := user.LookupId(s); err == nil {
		return "user " + u.Username + " (uid " + s + ")"
	}
	return "uid " + s
}
