package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

func TestReadPinFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pin")
	must(t, os.WriteFile(p, []byte("4321\n"), 0o600))
	if pin, err := ReadPinFile(p); err != nil || pin.Reveal() != "4321" {
		t.Fatalf("got %v", err)
	}
	// Debian shares secrets by group: 0640 and 0440 are fine.
	for _, mode := range []os.FileMode{0o640, 0o440, 0o400} {
		must(t, os.Chmod(p, mode))
		if _, err := ReadPinFile(p); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for mode, want := range map[os.FileMode]string{
		0o644: "readable by others (mode 0644): chmod 640 it",
		0o604: "readable by others (mode 0604): chmod 640 it",
		0o660: "writable by group or others (mode 0660): chmod 640 it",
		0o602: "writable by group or others (mode 0602): chmod 640 it",
	} {
		must(t, os.Chmod(p, mode))
		_, err := ReadPinFile(p)
		if err == nil || err.Error() != "pin_file "+p+": "+want {
			t.Errorf("mode %04o: got %v, want %s", mode, err, want)
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	if _, err := ReadPinFile(filepath.Join(dir, "empty")); err == nil || !strings.HasSuffix(err.Error(), ": empty") {
		t.Errorf("an empty pin_file: %v", err)
	}
	if _, err := ReadPinFile(dir); err == nil || err.Error() != "pin_file "+dir+": is a directory, not a file" {
		t.Errorf("a directory: %v", err)
	}
	if _, err := ReadPinFile(filepath.Join(dir, "none")); err == nil || !strings.HasSuffix(err.Error(), "none: no such file or directory") {
		t.Errorf("a missing file: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const confXML = `<Configuration>
 <RepositoryList>
  <Repository name="A"><Module>/a.so</Module><TokenLabel>a</TokenLabel><PIN>1</PIN><RequireBackup/><SkipPublicKey/></Repository>
  <Repository name="B"><Module>/b.so</Module><TokenLabel>b</TokenLabel><PIN>2</PIN></Repository>
 </RepositoryList>
 <Enforcer>
  <Datastore><SQLite> /x/kasp.db </SQLite></Datastore>
  <DelegationSignerSubmitCommand>/usr/bin/ods-keyguard-ds-submit --cka_id</DelegationSignerSubmitCommand>
  <ManualKeyGeneration/>
 </Enforcer>
</Configuration>`

func TestLoadOpenDNSSEC(t *testing.T) {
	p := filepath.Join(t.TempDir(), "conf.xml")
	os.WriteFile(p, []byte(confXML), 0o600)
	o, err := LoadOpenDNSSEC(p)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := o.Repository("A")
	b, _ := o.Repository("B")
	switch {
	case !a.RequireBackup || !a.SkipPublicKey || b.RequireBackup || b.SkipPublicKey:
		t.Errorf("flags: %+v %+v", a, b)
	case o.Datastore.SQLite != "/x/kasp.db" || o.Datastore.MySQL != nil:
		t.Errorf("datastore %+v", o.Datastore)
	case o.SocketFile != DefaultSocket:
		t.Errorf("socket %q", o.SocketFile)
	case o.SyslogFacility != "daemon":
		t.Errorf("facility %q", o.SyslogFacility)
	}
}

func TestLoadDefaultsAndMirrors(t *testing.T) {
	dir := t.TempDir()
	xml := filepath.Join(dir, "conf.xml")
	os.WriteFile(xml, []byte(confXML), 0o600)
	cfg := filepath.Join(dir, "k.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`opendnssec_conf = %q
[[mirror]]
repository = "A"
name = "a2"
token_label = "a2"
`, xml)), 0o600)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/opendnssec/keyguard" || c.EnforcerCLI != "ods-enforcer" {
		t.Errorf("defaults: %+v", c)
	}
	toks, err := c.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 3 || toks[2].Module != "/a.so" || toks[2].PIN.Reveal() != "1" || toks[2].Kind != hsmcheck.KindMirror {
		t.Errorf("tokens: %+v", toks)
	}
	if got := RepositoryTokens(toks, "A"); len(got) != 2 {
		t.Errorf("tokens of A: %+v", got)
	}
}

// conf.toml.example must decode strictly, with every commented key too.
func TestExampleDecodes(t *testing.T) {
	data, err := os.ReadFile("../conf.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		// Uncomment "# key = value" and "# [section]" lines, not prose.
		if s := strings.TrimPrefix(l, "# "); s != l && (strings.Contains(s, " = ") || strings.HasPrefix(s, "[")) {
			l = s
		}
		lines = append(lines, l)
	}
	for name, text := range map[string]string{"as shipped": string(data), "uncommented": strings.Join(lines, "\n")} {
		var c Config
		md, err := toml.Decode(text, &c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			t.Errorf("%s: unknown keys %v", name, und)
		}
	}
}

func TestRelativePathsAreTheConfigFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "conf.xml"), []byte(confXML), 0o600)
	cfg := filepath.Join(dir, "k.toml")
	os.WriteFile(cfg, []byte("opendnssec_conf = \"conf.xml\"\nstate_dir = \"state\"\n[backup_token.v]\nmodule = \"/m.so\"\ntoken_label = \"v\"\npin_file = \"v.pin\"\n"), 0o600)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != filepath.Join(dir, "state") || c.BackupTokens["v"].PinFile != filepath.Join(dir, "v.pin") {
		t.Errorf("got %q, %q", c.StateDir, c.BackupTokens["v"].PinFile)
	}
}

// A MySQL datastore, the syslog facility, and the Host's Port attribute.
func TestLoadOpenDNSSECMySQL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "conf.xml")
	must(t, os.WriteFile(p, []byte(`<Configuration>
 <RepositoryList><Repository name="A"><Module>/a.so</Module><TokenLabel>a</TokenLabel><PIN>1</PIN></Repository></RepositoryList>
 <Common><Logging><Syslog><Facility>local0</Facility></Syslog></Logging></Common>
 <Enforcer><Datastore><MySQL><Host Port="3307">127.0.0.1</Host><Database>kasp</Database><Username>ods</Username><Password>s3&amp;cr3t</Password></MySQL></Datastore></Enforcer>
</Configuration>`), 0o600))
	o, err := LoadOpenDNSSEC(p)
	if err != nil {
		t.Fatal(err)
	}
	m := o.Datastore.MySQL
	if m == nil || m.Host != "127.0.0.1" || m.Port != 3307 || m.Database != "kasp" || m.Username != "ods" || m.Password.Reveal() != "s3&cr3t" {
		t.Fatalf("got %+v", m)
	}
	if o.SyslogFacility != "local0" {
		t.Errorf("facility %q", o.SyslogFacility)
	}
	if got := fmt.Sprintf("%v %+v", o.Datastore, m); strings.Contains(got, "s3&cr3t") {
		t.Errorf("the password printed: %s", got)
	}
}

// A conf.xml that does not parse is reported by line, never with the text
// the parser choked on: that text can be a PIN.
func TestXMLErrorsQuoteNoPIN(t *testing.T) {
	p := filepath.Join(t.TempDir(), "conf.xml")
	for _, text := range []string{
		"<Configuration>\n<RepositoryList><Repository name=\"A\"><PIN>s3cr3t&PIN-9917</PIN></Repository></RepositoryList></Configuration>",
		"<Configuration>\n<RepositoryList><Repository name=\"A\"><PIN>s3cr3t<PIN-9917</PIN></Repository></RepositoryList></Configuration>",
		"<Configuration>\n<RepositoryList><Repository name=\"A\"><PIN>s3cr3t]]>PIN-9917",
	} {
		must(t, os.WriteFile(p, []byte(text), 0o600))
		_, err := LoadOpenDNSSEC(p)
		if err == nil || strings.Contains(err.Error(), "9917") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("got %v", err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), p+": line 2: not well-formed XML") {
			t.Errorf("got %v, want the line", err)
		}
	}
}

// [parent] trust_anchor is read at load, relative to the config file; a
// file that is no anchor is a one-line error naming it.
func TestTrustAnchor(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "conf.xml"), []byte(confXML), 0o600)
	os.WriteFile(filepath.Join(dir, "anchor.key"), []byte("example. 3600 IN DS 12345 13 2 "+strings.Repeat("ab", 32)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.key"), []byte("example. 3600 IN A 192.0.2.1\n"), 0o600)
	cfg := filepath.Join(dir, "k.toml")
	os.WriteFile(cfg, []byte("opendnssec_conf = \"conf.xml\"\nstate_dir = \"state\"\n[parent]\nnameservers = [\"192.0.2.53:53\"]\ntrust_anchor = \"anchor.key\"\n"), 0o600)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.ParentConfig().Anchor; a == nil || a.Zone != "example." {
		t.Fatalf("anchor %v", a)
	}
	os.WriteFile(cfg, []byte("opendnssec_conf = \"conf.xml\"\nstate_dir = \"state\"\n[parent]\ntrust_anchor = \"bad.key\"\n"), 0o600)
	_, err = Load(cfg)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "[parent] trust_anchor: trust anchor "+filepath.Join(dir, "bad.key")+": a A record: want DNSKEY or DS") {
		t.Fatalf("got %v", err)
	}
}

// An empty path is an error naming the key, never the default in disguise.
func TestEmptyPaths(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"state_dir", "opendnssec_conf"} {
		cfg := filepath.Join(dir, k+".toml")
		os.WriteFile(cfg, []byte(k+` = ""`+"\n"), 0o600)
		_, err := Load(cfg)
		if want := fmt.Sprintf("config %s: %s is empty: name a path, or leave the key out for its default", cfg, k); err == nil || err.Error() != want {
			t.Errorf("%s: %v", k, err)
		}
	}
}
