package config

import (
	"fmt"
	"sort"
)

// Token kinds.
const (
	KindRepository  = "repository"
	KindMirror      = "mirror"
	KindBackupToken = "backup token"
)

// Token is everything needed to open one token: a repository's, a mirror's
// or a backup token's.
type Token struct {
	Name       string // repository, mirror or backup token name
	Kind       string // KindRepository, KindMirror or KindBackupToken
	Repository string // the repository whose keys it holds ("" for a backup token)
	Module     string
	Label      string
	PIN        Secret
	Env        map[string]string
}

// Describe names the token for messages: `mirror "site-b"`.
func (t Token) Describe() string { return fmt.Sprintf("%s %q", t.Kind, t.Name) }

// Tokens lists the token of every repository, then every mirror, with their
// PINs read. Order is stable: conf.xml's, then the configuration's.
func (c *Config) Tokens() ([]Token, error) {
	var out []Token
	for _, r := range c.ODS.Repositories {
		out = append(out, Token{
			Name: r.Name, Kind: KindRepository, Repository: r.Name,
			Module: r.Module, Label: r.TokenLabel, PIN: r.PIN,
			Env: c.Repository[r.Name].Env,
		})
	}
	for _, m := range c.Mirrors {
		t := Token{
			Name: m.Name, Kind: KindMirror, Repository: m.Repository,
			Module: m.Module, Label: m.TokenLabel, Env: m.Env,
		}
		if m.PinFile == "" {
			r, _ := c.ODS.Repository(m.Repository)
			t.PIN = r.PIN
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
func RepositoryTokens(all []Token, repo string) []Token {
	var out []Token
	for _, t := range all {
		if t.Repository == repo && t.Kind != KindBackupToken {
			out = append(out, t)
		}
	}
	return out
}

// BackupToken returns the backup token configured as [backup_token.NAME].
func (c *Config) BackupToken(name string) (Token, error) {
	b, ok := c.BackupTokens[name]
	if !ok {
		var known []string
		for n := range c.BackupTokens {
			known = append(known, n)
		}
		sort.Strings(known)
		if len(known) == 0 {
			return Token{}, fmt.Errorf("backup token %q: no [backup_token.%s] in %s", name, name, c.Path)
		}
		return Token{}, fmt.Errorf("backup token %q: not configured in %s (configured: %v)", name, c.Path, known)
	}
	pin, err := ReadPinFile(b.PinFile)
	if err != nil {
		return Token{}, fmt.Errorf("backup token %q: %w", name, err)
	}
	return Token{Name: name, Kind: KindBackupToken, Module: b.Module, Label: b.TokenLabel, PIN: pin, Env: b.Env}, nil
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
