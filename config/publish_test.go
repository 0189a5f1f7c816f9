package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/publish"
)

// [publish] as written, its defaults, a zone's own settings, and a
// one-line error naming the key for each mistake.
func TestPublishSection(t *testing.T) {
	dir := t.TempDir()
	xml := filepath.Join(dir, "conf.xml")
	must(t, os.WriteFile(xml, []byte(confXML), 0o600))
	load := func(section string) (*Config, error) {
		p := filepath.Join(dir, "k.toml")
		must(t, os.WriteFile(p, []byte(fmt.Sprintf("opendnssec_conf = %q\n%s", xml, section)), 0o600))
		return Load(p)
	}
	c, err := load("")
	must(t, err)
	if c.PublishConfig().Configured() {
		t.Errorf("no [publish]: configured %+v", c.PublishConfig())
	}
	c, err = load(`[publish]
zone_file = "signed/%zone.zone"
owner = "0"
group = "root"
reload = ["rndc", "reload", "%zone"]
[publish.zones."Example.COM."]
mode = "report"
zone_file = "/srv/example.com"
file_mode = "0640"
`)
	must(t, err)
	p := c.PublishConfig()
	if !p.Configured() || p.Timeout != 120*time.Second || p.ReloadTimeout != 30*time.Second || p.OnDeadline != publish.DeadlinePublish || p.Margin != 0 {
		t.Errorf("defaults: %+v", p)
	}
	a := p.For("a.example.")
	if a.ZoneFile != filepath.Join(dir, "signed/a.example.zone") || a.Mode != publish.Enforce || a.Owner != 0 || a.Group != 0 || a.FileMode != 0o644 || len(a.Reload) != 3 {
		t.Errorf("a.example: %+v", a)
	}
	e := p.For("EXAMPLE.com")
	if e.ZoneFile != "/srv/example.com" || e.Mode != publish.Report || e.FileMode != 0o640 || e.Owner != 0 || e.Reload[0] != "rndc" {
		t.Errorf("example.com: %+v", e)
	}
	for section, want := range map[string]string{
		"[publish]\nzone_file = \"/z/%zone\"\n":                                              `[publish] reload: no command: the name servers must be told to load what is installed (such as ["rndc", "reload", "%zone"]; ["true"] if they need nothing)`,
		"[publish]\nzone_file = \"/z/one\"\nreload = [\"true\"]\n":                           `[publish] zone_file "/z/one": has no %zone: every zone would be written to the same file (name a file per zone in [publish.zones."ZONE"])`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\nmode = \"dry\"\n":         `[publish] mode "dry": want "enforce" or "report"`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\nowner = \"nobody-x1\"\n":  `[publish] owner "nobody-x1": no such user`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\nfile_mode = \"644x\"\n":   `[publish] file_mode "644x": want permissions in octal, such as "0640"`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\nfile_mode = \"0200\"\n":   `[publish] file_mode "0200": nobody could read the zone`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\ntimeout = \"5s\"\n":       `[publish] reload_timeout 30s: must be shorter than timeout 5s, which bounds the whole run`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\non_deadline = \"wait\"\n": `[publish] on_deadline "wait": want "publish" or "hold"`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"true\"]\nmargin = \"soon\"\n":      `[publish] margin "soon": want a duration such as 36h`,
		"[publish]\nreload = [\"true\"]\n[publish.zones.\"a.example\"]\nmode = \"report\"\n": `[publish] zones."a.example": no zone_file, and [publish] has none for every zone`,
		"[publish]\nzone_file = \"/z/%zone\"\nreload = [\"rndc\", \" \"]\n":                  `[publish] reload: argument 2 is empty`,
	} {
		_, err := load(section)
		if err == nil || err.Error() != "config "+filepath.Join(dir, "k.toml")+": "+want {
			t.Errorf("%s: got %v\nwant %s", section, err, want)
		}
	}
}
