package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("4321")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q", s, s, s, s, s)} {
		if strings.Contains(got, "4321") {
			t.Errorf("printed %q", got)
		}
	}
	tok := Token{Name: "x", PIN: s}
	if got := fmt.Sprintf("%+v", tok); strings.Contains(got, "4321") {
		t.Errorf("token printed %q", got)
	}
	b, _ := json.Marshal(tok)
	if strings.Contains(string(b), "4321") {
		t.Errorf("JSON %s", b)
	}
	if s.Reveal() != "4321" {
		t.Error("Reveal lost the PIN")
	}
}

func TestReadPinFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pin")
	os.WriteFile(p, []byte("4321\n"), 0o600)
	if pin, err := ReadPinFile(p); err != nil || pin.Reveal() != "4321" {
		t.Fatalf("got %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		os.Chmod(p, mode)
		_, err := ReadPinFile(p)
		if err == nil || !strings.Contains(err.Error(), "readable by group or others") {
			t.Errorf("mode %04o: got %v", mode, err)
		}
	}
	os.Chmod(p, 0o400)
	if _, err := ReadPinFile(p); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	if _, err := ReadPinFile(filepath.Join(dir, "empty")); err == nil {
		t.Error("an empty pin_file was accepted")
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
	case o.Datastore.SQLite != "/x/kasp.db":
		t.Errorf("datastore %q", o.Datastore.SQLite)
	case o.SocketFile != DefaultSocket:
		t.Errorf("socket %q", o.SocketFile)
	case o.DSSubmitCommand != "/usr/bin/ods-keyguard-ds-submit --cka_id" || !o.ManualKeyGeneration:
		t.Errorf("enforcer: %+v", o)
	case o.KeyGenerationPeriod != "P1Y":
		t.Errorf("period %q", o.KeyGenerationPeriod)
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
	if len(toks) != 3 || toks[2].Module != "/a.so" || toks[2].PIN.Reveal() != "1" || toks[2].Kind != KindMirror {
		t.Errorf("tokens: %+v", toks)
	}
	if got := RepositoryTokens(toks, "A"); len(got) != 2 {
		t.Errorf("tokens of A: %+v", got)
	}
}

func TestParseISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"P7D": 7 * 24 * time.Hour, "PT12H": 12 * time.Hour, "PT3600S": time.Hour, "P1Y": 365 * 24 * time.Hour,
		"P1M": 31 * 24 * time.Hour, "P2W": 14 * 24 * time.Hour, "P1DT1H1M1S": 25*time.Hour + time.Minute + time.Second, "P0D": 0,
	} {
		if got, err := ParseISODuration(in); err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "P", "PT", "7D", "P1H", "P1DT", "1 week", "P-1D", "P1.5D"} {
		if _, err := ParseISODuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
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
