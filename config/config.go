// Package config reads ods-keyguard's TOML configuration and the parts of
// OpenDNSSEC's conf.xml that it depends on.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/internal/perm"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/pinlock"
	"github.com/ods-keyguard/ods-keyguard/secret"
	"github.com/ods-keyguard/ods-keyguard/servedzone"
)

// DefaultPath is read when neither --config nor $ODS_KEYGUARD_CONFIG is given.
const DefaultPath = "/etc/opendnssec/keyguard.toml"

// EnvVar names the environment variable that points at the configuration.
const EnvVar = "ODS_KEYGUARD_CONFIG"

// Config is ods-keyguard's configuration with OpenDNSSEC's conf.xml read in.
type Config struct {
	Path           string `toml:"-"`
	OpenDNSSECConf string `toml:"opendnssec_conf"`
	EnforcerCLI    string `toml:"enforcer_cli"`
	StateDir       string `toml:"state_dir"`
	// LockTimeout bounds how long a writer waits for the state lock (Go
	// duration); LockWait is it parsed.
	LockTimeout string        `toml:"lock_timeout"`
	LockWait    time.Duration `toml:"-"`

	// Repository adds what conf.xml cannot say about a repository's token,
	// keyed by repository name.
	Repository   map[string]RepositoryExtra `toml:"repository"`
	Mirrors      []Mirror                   `toml:"mirror"`
	BackupTokens map[string]TokenConf       `toml:"backup_token"`
	Hooks        Hooks                      `toml:"hooks"`
	Backup       Backup                     `toml:"backup"`
	Check        Check                      `toml:"check"`
	Parent       Parent                     `toml:"parent"`
	Zone         Zone                       `toml:"zone"`
	Ledger       Ledger                     `toml:"ledger"`
	Publish      Publish                    `toml:"publish"`

	// StateGroup is the group that a state_dir made by ods-keyguard gets:
	// the group of opendnssec_conf (opendnssec on Debian), so that the
	// enforcer's hooks can write and the monitoring user can read. -1 when
	// it cannot be told.
	StateGroup int `toml:"-"`
	// HookTimeout is [hooks] timeout, parsed.
	HookTimeout time.Duration `toml:"-"`

	ODS *OpenDNSSEC `toml:"-"`

	// RefusalJournal records a refused PIN in the ledger's log; set by the
	// command that opens the ledger (nil: the refusal file alone).
	RefusalJournal func(pinlock.Refusal) error `toml:"-"`
}

// RepositoryExtra is [repository.NAME]: the environment its module needs when
// ods-keyguard runs where that environment is not set (a monitoring agent, say).
type RepositoryExtra struct {
	Env map[string]string `toml:"env"`
}

// TokenConf says how to open a token that conf.xml does not describe.
type TokenConf struct {
	Module     string            `toml:"module"`
	TokenLabel string            `toml:"token_label"`
	PinFile    string            `toml:"pin_file"`
	Env        map[string]string `toml:"env"`
}

// Mirror is another HSM that must hold the same keys as a repository.
type Mirror struct {
	Repository string `toml:"repository"`
	Name       string `toml:"name"`
	TokenConf
}

// Hooks configures what the enforcer's DS hooks forward to, and how long a
// hook may take.
type Hooks struct {
	DSSubmitForward  string `toml:"ds_submit_forward"`
	DSRetractForward string `toml:"ds_retract_forward"`
	// Timeout bounds a hook run (Go duration, default 20s): the enforcer
	// waits for its hooks, so a hung token must not hold it up.
	Timeout string `toml:"timeout"`
}

// Parent says where to read the DS RRset of each zone.
type Parent struct {
	// Nameservers are the parent zone's servers, asked directly ("HOST:PORT").
	Nameservers []string `toml:"nameservers"`
	// Resolver is a recursive resolver ("ADDR:PORT"), when no nameservers are given.
	Resolver string `toml:"resolver"`
	// Timeout bounds one query (Go duration, default 3s).
	Timeout string `toml:"timeout"`
	// TrustAnchor is a file holding the parent zone's own key (DNSKEY or DS
	// records, or BIND's trust-anchors statement): every DS answer must
	// then validate from it, or counts as not read.
	TrustAnchor string `toml:"trust_anchor"`

	timeout time.Duration
	anchor  *parent.Anchor
}

// Zone says where to read the zones as they are served: their DNSKEY RRset
// and its signatures, which check compares with the enforcer and the HSMs.
type Zone struct {
	// Nameservers serve the zones the enforcer signs, asked directly
	// ("HOST:PORT"); empty: the served zones are not read.
	Nameservers []string `toml:"nameservers"`
	// RRSIGWarning: a DNSKEY RRset signature that expires within it is a
	// WARNING (Go duration; default the policy's <Signatures><Refresh>:
	// the signer should have renewed it by then).
	RRSIGWarning string `toml:"rrsig_warning"`

	rrsigWarning time.Duration
}

// Ledger says where ods-keyguard keeps its records: "files" in state_dir
// (the default), or "mysql", a database of its own that the hosts of an
// enforcer pair share.
type Ledger struct {
	Backend      string `toml:"backend"`
	DSN          string `toml:"dsn"`           // user@tcp(host:3306)/database, no password
	PasswordFile string `toml:"password_file"` // checked like a pin_file
	// SigningKey is the file of the Ed25519 key that signs the log's
	// checkpoints (ods-keyguard ledger keygen makes it), checked like a
	// pin_file; "" signs none.
	SigningKey string `toml:"signing_key"`
	// PublicKeys are files of the public keys whose checkpoints ledger
	// verify accepts (each host's of a pair); default: signing_key.pub.
	PublicKeys []string `toml:"public_keys"`
	// Origin names the log in its checkpoints, set when the log begins.
	Origin string `toml:"origin"`
	// SigningHSM is the Ed25519 key on a token that signs checkpoints
	// instead of signing_key ([ledger.signing_hsm]).
	SigningHSM *SigningHSM `toml:"signing_hsm"`

	server *mysqlx.Server
}

// SigningHSM is [ledger.signing_hsm]: a token that does CKM_EDDSA, and the
// label of the key on it (ods-keyguard ledger keygen --hsm makes it).
type SigningHSM struct {
	TokenConf
	KeyLabel string `toml:"key_label"`
	// KeyName is the key's name in signatures (default key_label).
	KeyName string `toml:"key_name"`
}

// Ledger backends.
const (
	LedgerFiles = "files"
	LedgerMySQL = "mysql"
)

// Backup is the schedule of backup ceremonies, as ISO 8601 durations.
type Backup struct {
	Interval string `toml:"interval"`
	Grace    string `toml:"grace"`
}

// Check tunes the sufficiency check.
type Check struct {
	// NewZones is how many zones per policy you expect to add before the
	// next backup: each takes keys from the pool at once.
	NewZones map[string]int `toml:"new_zones"`
	// TokenMaxAge, when set (Go duration), makes check judge the tokens
	// from what ods-keyguard scan recorded in state_dir, no older than it,
	// instead of reading every key within a plugin's time limit; TokenAge
	// is it parsed (0: check reads the tokens itself).
	TokenMaxAge string        `toml:"token_max_age"`
	TokenAge    time.Duration `toml:"-"`
}

// Path picks the configuration file: the flag, else $ODS_KEYGUARD_CONFIG,
// else DefaultPath.
func Path(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvVar); env != "" {
		return env
	}
	return DefaultPath
}

// voice puts a parser's message in the project's: lower case, no final
// period ("Key 'x' has already been defined." gives "key 'x' has already
// been defined").
func voice(msg string) string {
	msg = strings.TrimSuffix(strings.TrimSpace(msg), ".")
	if len(msg) > 1 && msg[0] >= 'A' && msg[0] <= 'Z' && msg[1] >= 'a' && msg[1] <= 'z' {
		msg = string(msg[0]+'a'-'A') + msg[1:]
	}
	return msg
}

// Load reads the configuration at path, strictly: an unknown key is an error.
func Load(path string) (*Config, error) {
	c := &Config{Path: path}
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config %s: line %d: %s", path, perr.Position.Line, voice(perr.Message))
		}
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return nil, fmt.Errorf("config %s: is a folder, not a file", path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config %s: no such file (set --config or $%s)", path, EnvVar)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("config %s: permission denied: %s", path, perm.Hint(path))
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("config %s: unknown key %q", path, keys[0])
	}
	// A key given empty is a mistake (a variable that expanded to
	// nothing), not a wish for the default: the default state_dir is the
	// production one, and no forward command means nothing goes out.
	for _, k := range []struct {
		key  []string
		val  string
		what string
	}{
		{[]string{"opendnssec_conf"}, c.OpenDNSSECConf, "a path"},
		{[]string{"state_dir"}, c.StateDir, "a path"},
		{[]string{"enforcer_cli"}, c.EnforcerCLI, "a value"},
		{[]string{"hooks", "ds_submit_forward"}, c.Hooks.DSSubmitForward, "a value"},
		{[]string{"hooks", "ds_retract_forward"}, c.Hooks.DSRetractForward, "a value"},
		{[]string{"backup", "interval"}, c.Backup.Interval, "a value"},
		{[]string{"backup", "grace"}, c.Backup.Grace, "a value"},
	} {
		if md.IsDefined(k.key...) && strings.TrimSpace(k.val) == "" {
			return nil, fmt.Errorf("config %s: %s is empty: name %s, or leave the key out for its default", path, keyName(k.key), k.what)
		}
	}
	if c.OpenDNSSECConf == "" {
		c.OpenDNSSECConf = "/etc/opendnssec/conf.xml"
	}
	// Relative paths are the config file's, not the working directory's:
	// the enforcer runs its hooks in its own <WorkingDirectory>.
	base := filepath.Dir(path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.OpenDNSSECConf)
	abs(&c.StateDir)
	abs(&c.Ledger.PasswordFile)
	abs(&c.Ledger.SigningKey)
	if h := c.Ledger.SigningHSM; h != nil {
		abs(&h.PinFile)
		if h.KeyName == "" {
			h.KeyName = h.KeyLabel
		}
		switch {
		case c.Ledger.SigningKey != "":
			return nil, fmt.Errorf("config %s: [ledger] signing_key and [ledger.signing_hsm]: one signer, not both", path)
		case h.Module == "" || h.TokenLabel == "" || h.PinFile == "" || h.KeyLabel == "":
			return nil, fmt.Errorf("config %s: [ledger.signing_hsm] needs module, token_label, pin_file and key_label", path)
		}
	}
	for i := range c.Ledger.PublicKeys {
		abs(&c.Ledger.PublicKeys[i])
	}
	abs(&c.Parent.TrustAnchor)
	for i := range c.Mirrors {
		abs(&c.Mirrors[i].PinFile)
	}
	for name, b := range c.BackupTokens {
		abs(&b.PinFile)
		c.BackupTokens[name] = b
	}
	if c.EnforcerCLI == "" {
		c.EnforcerCLI = "ods-enforcer"
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/opendnssec/keyguard"
	}
	if c.LockTimeout == "" {
		c.LockTimeout = "30s"
	}
	if c.LockWait, err = time.ParseDuration(c.LockTimeout); err != nil || c.LockWait < 0 {
		return nil, fmt.Errorf("config %s: lock_timeout %q: want a duration such as 30s", path, c.LockTimeout)
	}
	if c.Check.TokenAge, err = duration(c.Check.TokenMaxAge, 0); err != nil || c.Check.TokenAge < 0 {
		return nil, fmt.Errorf("config %s: [check] token_max_age %q: want a duration such as 15m", path, c.Check.TokenMaxAge)
	}
	if c.HookTimeout, err = duration(c.Hooks.Timeout, 20*time.Second); err != nil {
		return nil, fmt.Errorf("config %s: [hooks] timeout %q: want a duration such as 20s", path, c.Hooks.Timeout)
	}
	if c.Parent.timeout, err = duration(c.Parent.Timeout, 3*time.Second); err != nil {
		return nil, fmt.Errorf("config %s: [parent] timeout %q: want a duration such as 3s", path, c.Parent.Timeout)
	}
	for _, ns := range c.Parent.Nameservers {
		if err := hostPort(ns); err != nil {
			return nil, fmt.Errorf("config %s: [parent] nameservers %q: %w", path, ns, err)
		}
	}
	if md.IsDefined("parent", "resolver") {
		if err := hostPort(c.Parent.Resolver); err != nil {
			return nil, fmt.Errorf("config %s: [parent] resolver %q: %w", path, c.Parent.Resolver, err)
		}
	}
	if c.Parent.TrustAnchor != "" {
		if c.Parent.anchor, err = parent.LoadAnchor(c.Parent.TrustAnchor); err != nil {
			return nil, fmt.Errorf("config %s: [parent] trust_anchor: %w", path, err)
		}
	}
	if c.Zone.rrsigWarning, err = duration(c.Zone.RRSIGWarning, 0); err != nil {
		return nil, fmt.Errorf("config %s: [zone] rrsig_warning %q: want a duration such as 72h", path, c.Zone.RRSIGWarning)
	}
	for _, ns := range c.Zone.Nameservers {
		if err := hostPort(ns); err != nil {
			return nil, fmt.Errorf("config %s: [zone] nameservers %q: %w", path, ns, err)
		}
	}
	if err := c.Publish.parse(base); err != nil {
		return nil, fmt.Errorf("config %s: [publish] %w", path, err)
	}
	if err := c.checkKeys(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := c.Schedule(); err != nil {
		return nil, err
	}
	if err := c.Ledger.parse(); err != nil {
		return nil, fmt.Errorf("config %s: [ledger] %w", path, err)
	}
	c.StateGroup = fileGroup(c.OpenDNSSECConf)
	ods, err := LoadOpenDNSSEC(c.OpenDNSSECConf)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.ODS = ods
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) validate() error {
	for name := range c.Repository {
		if _, ok := c.ODS.Repository(name); !ok {
			return fmt.Errorf("[repository.%s]: no such repository in %s", name, c.ODS.Path)
		}
	}
	names := map[string]bool{}
	for _, r := range c.ODS.Repositories {
		names[r.Name] = true
	}
	for i, m := range c.Mirrors {
		switch {
		case m.Name == "":
			return fmt.Errorf("mirror %d: no name", i+1)
		case names[m.Name]:
			return fmt.Errorf("mirror %q: name already used by a repository or mirror", m.Name)
		case m.Repository == "":
			return fmt.Errorf("mirror %q: no repository", m.Name)
		}
		names[m.Name] = true
		r, ok := c.ODS.Repository(m.Repository)
		if !ok {
			return fmt.Errorf("mirror %q: repository %q is not in %s", m.Name, m.Repository, c.ODS.Path)
		}
		if m.Module == "" {
			c.Mirrors[i].Module = r.Module
		}
		if m.TokenLabel == "" {
			return fmt.Errorf("mirror %q: no token_label", m.Name)
		}
	}
	for name, b := range c.BackupTokens {
		switch {
		case b.Module == "":
			return fmt.Errorf("backup_token %q: no module", name)
		case b.TokenLabel == "":
			return fmt.Errorf("backup_token %q: no token_label", name)
		case b.PinFile == "":
			return fmt.Errorf("backup_token %q: no pin_file", name)
		}
	}
	return nil
}

// hostPort checks a server address as the DNS client takes it: HOST:PORT,
// the port a number from 1 to 65535 (a name such as "domain" is not one).
func hostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t") {
		return errors.New("want HOST:PORT, such as 192.0.2.53:53")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// checkKeys refuses, when the file loads, the values that would otherwise
// fail later on every run: environment variable names that are none,
// negative zone counts.
func (c *Config) checkKeys() error {
	envs := map[string]map[string]string{}
	for name, r := range c.Repository {
		envs["[repository."+name+"] env"] = r.Env
	}
	for _, m := range c.Mirrors {
		envs[fmt.Sprintf("[[mirror]] %q env", m.Name)] = m.Env
	}
	for name, b := range c.BackupTokens {
		envs["[backup_token."+name+"] env"] = b.Env
	}
	for _, where := range slices.Sorted(maps.Keys(envs)) {
		for k := range envs[where] {
			if !envName(k) {
				return fmt.Errorf("%s: %q is no environment variable name", where, k)
			}
		}
	}
	for policy, n := range c.Check.NewZones {
		if n < 0 {
			return fmt.Errorf("[check] new_zones %q = %d: want 0 or more", policy, n)
		}
	}
	return nil
}

// keyName is a key as the man page writes it: "[hooks] timeout".
func keyName(k []string) string {
	if len(k) == 1 {
		return k[0]
	}
	return "[" + strings.Join(k[:len(k)-1], ".") + "] " + k[len(k)-1]
}

// envName says whether s can name an environment variable.
func envName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func duration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("not a duration")
	}
	return d, nil
}

// fileGroup is the group that owns path, or -1.
func fileGroup(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}

func (l *Ledger) parse() error {
	switch l.Backend {
	case "", LedgerFiles:
		// dsn and password_file may be set already: the target of
		// ledger migrate, before the switch to backend = "mysql".
		l.Backend = LedgerFiles
		if l.DSN == "" && l.PasswordFile == "" {
			return nil
		}
		if l.DSN == "" || l.PasswordFile == "" {
			return errors.New("dsn and password_file go together")
		}
	case LedgerMySQL:
		if l.DSN == "" || l.PasswordFile == "" {
			return errors.New(`backend = "mysql" needs dsn and password_file`)
		}
	default:
		return fmt.Errorf("backend %q: want \"files\" or \"mysql\"", l.Backend)
	}
	srv, err := mysqlx.ParseDSN(l.DSN)
	if err != nil {
		return err
	}
	l.server = &srv
	return nil
}

// LedgerServer is the MySQL ledger's server, its password read from
// password_file; nil when [ledger] has none.
func (c *Config) LedgerServer() (*mysqlx.Server, error) {
	if c.Ledger.server == nil {
		return nil, nil
	}
	pw, err := readSecretFile("password_file", c.Ledger.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("[ledger] %w", err)
	}
	srv := *c.Ledger.server
	srv.Password = pw
	return &srv, nil
}

// LedgerOptions says where ods-keyguard's records are. A writer that has
// to wait for the lock says so on waiting; readOnly makes nothing (check,
// run by the monitoring user).
func (c *Config) LedgerOptions(waiting io.Writer, readOnly bool) (ledger.Options, error) {
	o := ledger.Options{Dir: c.StateDir, Group: c.StateGroup, LockWait: c.LockWait, Waiting: waiting, ReadOnly: readOnly,
		Origin: c.Ledger.Origin, Signer: c.LedgerSigner(), Keys: c.LedgerKeys()}
	if c.Ledger.Backend == LedgerMySQL {
		srv, err := c.LedgerServer()
		if err != nil {
			return o, err
		}
		o.MySQL = srv
	}
	return o, nil
}

// RequireBackup says, per repository, whether conf.xml has <RequireBackup/>.
func (c *Config) RequireBackup() map[string]bool {
	rb := map[string]bool{}
	for _, r := range c.ODS.Repositories {
		rb[r.Name] = r.RequireBackup
	}
	return rb
}

// ServedConfig is [zone] for package served; its queries take [parent]
// timeout.
func (c *Config) ServedConfig() servedzone.Config {
	return servedzone.Config{Nameservers: c.Zone.Nameservers, Timeout: c.Parent.timeout, Warn: c.Zone.rrsigWarning}
}

// ParentConfig is [parent] for package parent.
func (c *Config) ParentConfig() parent.Config {
	return parent.Config{Nameservers: c.Parent.Nameservers, Resolver: c.Parent.Resolver, Timeout: c.Parent.timeout, Anchor: c.Parent.anchor}
}

// maxPinFile bounds what is read of a pin_file.
const maxPinFile = 4096

// ReadPinFile reads a PIN (or a password) from a regular file that nobody
// but its owner may write and that others may not read: 0600, or 0640 where
// a group shares it, as Debian shares conf.xml with group opendnssec.
func ReadPinFile(path string) (secret.Value, error) { return readSecretFile("pin_file", path) }

// readSecretFile reads a PIN or password from the file key names.
func readSecretFile(key, path string) (secret.Value, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, path, perm.Explain(path, errors.Unwrap(err)))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, path, errors.Unwrap(err))
	}
	switch perm := fi.Mode().Perm(); {
	case fi.IsDir():
		return "", fmt.Errorf("%s %s: is a directory, not a file", key, path)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s %s: not a regular file (%s)", key, path, fi.Mode().Type())
	case perm&0o022 != 0:
		return "", fmt.Errorf("%s %s: writable by group or others (mode %04o): chmod 640 it", key, path, perm)
	case perm&0o004 != 0:
		return "", fmt.Errorf("%s %s: readable by others (mode %04o): chmod 640 it", key, path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPinFile+1))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, path, errors.Unwrap(err))
	}
	if len(data) > maxPinFile {
		return "", fmt.Errorf("%s %s: longer than %d bytes: not a PIN or password", key, path, maxPinFile)
	}
	pin := strings.TrimRight(string(data), "\r\n")
	if pin == "" {
		return "", fmt.Errorf("%s %s: empty", key, path)
	}
	return secret.Value(pin), nil
}
