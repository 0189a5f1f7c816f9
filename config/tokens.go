package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/pinlock"
)

// PINRefusals is the record of the PINs a token refused, in state_dir: no
// command logs in with one again (package pinlock).
func (c *Config) PINRefusals() *pinlock.Store {
	return &pinlock.Store{Dir: c.StateDir, Group: c.StateGroup, Journal: c.RefusalJournal}
}

// Tokens lists the token of every repository, then every mirror, with their
// PINs read. Order is stable: conf.xml's, then the configuration's.
func (c *Config) Tokens() ([]hsmcheck.Token, error) {
	var out []hsmcheck.Token
	refusals := c.PINRefusals()
	for _, r := range c.ODS.Repositories {
		out = append(out, hsmcheck.Token{
			Name: r.Name, Kind: hsmcheck.KindRepository, Repository: r.Name,
			Module: r.Module, Label: r.TokenLabel, PIN: r.PIN,
			PINSource: c.ODS.Path, Logins: refusals,
			Env: c.Repository[r.Name].Env,
		})
	}
	for _, m := range c.Mirrors {
		t := hsmcheck.Token{
			Name: m.Name, Kind: hsmcheck.KindMirror, Repository: m.Repository,
			Module: m.Module, Label: m.TokenLabel, Env: m.Env,
			PINSource: m.PinFile, Logins: refusals,
		}
		if m.PinFile == "" {
			r, _ := c.ODS.Repository(m.Repository)
			t.PIN = r.PIN
			t.PINSource = c.ODS.Path
		} else {
			pin, err := ReadPinFile(m.PinFile)
			if err != nil {
				return nil, fmt.Errorf("mirror %q: %w", m.Name, err)
			}
			t.PIN = pin
		}
		out = append(out, t)
	}
	return out, nil
}

// RepositoryTokens returns the tokens that must hold repo's keys: its own and
// its mirrors'.
func RepositoryTokens(all []hsmcheck.Token, repo string) []hsmcheck.Token {
	var out []hsmcheck.Token
	for _, t := range all {
		if t.Repository == repo && t.Kind != hsmcheck.KindBackupToken {
			out = append(out, t)
		}
	}
	return out
}

// BackupToken returns the backup token configured as [backup_token.NAME].
func (c *Config) BackupToken(name string) (hsmcheck.Token, error) {
	b, ok := c.BackupTokens[name]
	if !ok {
		var known []string
		for n := range c.BackupTokens {
			known = append(known, n)
		}
		sort.Strings(known)
		if len(known) == 0 {
			return hsmcheck.Token{}, fmt.Errorf("backup token %q: no [backup_token.%s] in %s", name, name, c.Path)
		}
		return hsmcheck.Token{}, fmt.Errorf("backup token %q: not configured in %s (configured: %v)", name, c.Path, known)
	}
	pin, err := ReadPinFile(b.PinFile)
	if err != nil {
		return hsmcheck.Token{}, fmt.Errorf("backup token %q: %w", name, err)
	}
	return hsmcheck.Token{Name: name, Kind: hsmcheck.KindBackupToken, Module: b.Module, Label: b.TokenLabel, PIN: pin, Env: b.Env,
		PINSource: b.PinFile, Logins: c.PINRefusals()}, nil
}

// RepositoryNames lists conf.xml's repositories, or checks that only is one.
func (c *Config) RepositoryNames(only string) ([]string, error) {
	if only != "" {
		if _, ok := c.ODS.Repository(only); !ok {
			return nil, fmt.Errorf("repository %q is not in %s", only, c.ODS.Path)
		}
		return []string{only}, nil
	}
	var out []string
	for _, r := range c.ODS.Repositories {
		out = append(out, r.Name)
	}
	return out, nil
}

// KnownToken checks that name is a repository, mirror or backup token of
// the configuration: an error naming those there are when it is not.
func (c *Config) KnownToken(name string) error {
	var names []string
	for _, r := range c.ODS.Repositories {
		names = append(names, r.Name)
	}
	for _, m := range c.Mirrors {
		names = append(names, m.Name)
	}
	var backups []string
	for n := range c.BackupTokens {
		backups = append(backups, n)
	}
	sort.Strings(backups)
	names = append(names, backups...)
	for _, n := range names {
		if n == name {
			return nil
		}
	}
	return fmt.Errorf("%q is no repository, mirror or backup token of %s (configured: %s)", name, c.Path, strings.Join(names, ", "))
}
