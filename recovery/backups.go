package recovery

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// Whether a key is on the backup is the backup tokens' to say, where one
// is configured ([backup_token.NAME]) and can be read: the record of a
// ceremony says what was there then, the token what is there now (a key
// deleted from it since, a token wiped or swapped). Where a configured
// backup token cannot be read, it cannot be told (UNKNOWN); where none is
// configured, the record speaks alone, and the output says so.

// Where the word on a key's backup comes from (LostKey.BackupSource).
const (
	FromToken   = "token"   // a backup token was read now
	FromRecord  = "record"  // no backup token is configured: the ceremony record alone
	FromUnknown = "unknown" // a backup token could not be read
)

// lostKeyIn is lostKey, with the backup tokens' word on its backup.
func lostKeyIn(backups []Token, cov ledger.Coverage, k *enforcer.Key) LostKey {
	l := lostKey(cov, k)
	if len(backups) == 0 {
		if l.Recoverable {
			l.BackupSource = FromRecord
			l.BackupNote = "the ceremony record says so; no backup token is configured, none was read"
		}
		return l
	}
	fp := ""
	if c := cov.Covering(k.Repository, k.Locator); c != nil {
		rec, _ := c.Key(k.Locator)
		fp = rec.Fingerprint
	}
	holder, read, unreadable := onBackups(backups, k.Locator, fp)
	if holder != "" {
		l.Recoverable, l.BackupSource, l.BackupToken = true, FromToken, holder
		l.BackupNote = fmt.Sprintf("backup token %q holds it (read now)", holder)
		if l.Class == After {
			l.Class = Covered
		}
		return l
	}
	if len(unreadable) > 0 {
		l.Recoverable, l.BackupSource = false, FromUnknown
		l.Unknown = "backup token " + strings.Join(unreadable, " and ") + " could not be read: whether it holds the key cannot be told"
		return l
	}
	if l.Recoverable {
		l.BackupNote = fmt.Sprintf("ceremony %s recorded it as backed up, but no backup token holds it now (read: %s)", l.Ceremony, strings.Join(read, ", "))
	}
	l.Recoverable, l.BackupSource = false, FromToken
	if l.Class == Covered {
		l.Class = After
	}
	return l
}

// unknownBackups is what a verdict that could not read a backup token
// starts with; "" when none was unknown.
func unknownBackups(lost []LostKey) string {
	for _, l := range lost {
		if l.Unknown != "" {
			return "cannot tell for certain, " + l.Unknown + ": "
		}
	}
	return ""
}

// onBackups reads the backup tokens' word on the key locator whose public
// key's fingerprint is fp ("": not known): the name of one that holds it
// ("" when none does), and those read and those that could not be, named.
func onBackups(backups []Token, locator, fp string) (holder string, read, unreadable []string) {
	for _, t := range backups {
		if t.Err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%q (%v)", t.Name, t.Err))
			continue
		}
		read = append(read, fmt.Sprintf("%q", t.Name))
		got, n := t.Keys.Find(locator)
		if n > 0 && (fp == "" || got.Fingerprint == "" || got.Fingerprint == fp) {
			return t.Name, read, unreadable
		}
	}
	return "", read, unreadable
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
