package config

import (
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/publish"
)

// Publish is [publish]: the gate between the signer and the name servers
// (ods-keyguard-publish, the signer's <NotifyCommand>).
type Publish struct {
	// PublishZone is every zone's: mode, zone_file, owner, group,
	// file_mode, reload.
	PublishZone
	ReloadTimeout string `toml:"reload_timeout"`
	// Timeout bounds a whole run of the gate (Go duration).
	Timeout string `toml:"timeout"`
	// Margin: every signature must stay valid at least this long (Go
	// duration; default half the policy's <Signatures><Refresh>).
	Margin string `toml:"margin"`
	// OnDeadline is "publish" (the default) or "hold".
	OnDeadline string `toml:"on_deadline"`
	// Zones are settings of their own for some zones.
	Zones map[string]PublishZone `toml:"zones"`

	parsed publish.Config
}

// PublishZone is how a zone is published: in [publish] for every zone, in
// [publish.zones."ZONE"] what differs for that one.
type PublishZone struct {
	// Mode is "enforce" (the default) or "report".
	Mode string `toml:"mode"`
	// ZoneFile is where the name servers read the zone, %zone standing
	// for its name.
	ZoneFile string `toml:"zone_file"`
	// Owner, Group and FileMode are what the installed file gets.
	Owner    string `toml:"owner"`
	Group    string `toml:"group"`
	FileMode string `toml:"file_mode"`
	// Reload is the name server's reload command, an argument list with
	// %zone and %file.
	Reload []string `toml:"reload"`
}

// PublishConfig is [publish], checked when the configuration was loaded;
// Configured() is false when there is none.
func (c *Config) PublishConfig() publish.Config { return c.Publish.parsed }

// parse checks [publish] and makes relative paths the configuration
// file's: a one-line error naming the key.
func (p *Publish) parse(base string) error {
	if p.ZoneFile == "" && len(p.Zones) == 0 && p.Mode == "" && len(p.Reload) == 0 {
		return nil // no gate
	}
	out := publish.Config{Zones: map[string]publish.Site{}}
	var err error
	site := p.PublishZone
	if site.Mode == "" {
		site.Mode = publish.Enforce
	}
	if site.FileMode == "" {
		site.FileMode = "0644"
	}
	if out.Site, err = site.parse(base, ""); err != nil {
		return err
	}
	if out.ReloadTimeout, err = duration(p.ReloadTimeout, 30*time.Second); err != nil {
		return fmt.Errorf("reload_timeout %q: want a duration such as 30s", p.ReloadTimeout)
	}
	if out.Timeout, err = duration(p.Timeout, 120*time.Second); err != nil {
		return fmt.Errorf("timeout %q: want a duration such as 120s", p.Timeout)
	}
	if out.ReloadTimeout >= out.Timeout {
		return fmt.Errorf("reload_timeout %s: must be shorter than timeout %s, which bounds the whole run", out.ReloadTimeout, out.Timeout)
	}
	if out.Margin, err = duration(p.Margin, 0); err != nil {
		return fmt.Errorf("margin %q: want a duration such as 36h", p.Margin)
	}
	switch p.OnDeadline {
	case "":
		out.OnDeadline = publish.DeadlinePublish
	case publish.DeadlinePublish, publish.DeadlineHold:
		out.OnDeadline = p.OnDeadline
	default:
		return fmt.Errorf("on_deadline %q: want \"publish\" or \"hold\"", p.OnDeadline)
	}
	for name, z := range p.Zones {
		zone := publish.ZoneName(name)
		s, err := z.parse(base, zone)
		if err != nil {
			return err
		}
		out.Zones[zone] = s
	}
	// Every zone must end up with a place and a reload command.
	if out.Site.ZoneFile == "" {
		for name, z := range out.Zones {
			if z.ZoneFile == "" {
				return fmt.Errorf("zones.%q: no zone_file, and [publish] has none for every zone", name)
			}
		}
	} else if !strings.Contains(out.Site.ZoneFile, "%zone") {
		return fmt.Errorf("zone_file %q: has no %%zone: every zone would be written to the same file (name a file per zone in [publish.zones.\"ZONE\"])", out.Site.ZoneFile)
	}
	if len(out.Site.Reload) == 0 {
		for name, z := range out.Zones {
			if len(z.Reload) == 0 {
				return fmt.Errorf("zones.%q: no reload command, and [publish] has none for every zone", name)
			}
		}
		if out.Site.ZoneFile != "" {
			return errors.New("reload: no command: the name servers must be told to load what is installed (such as [\"rndc\", \"reload\", \"%zone\"]; [\"true\"] if they need nothing)")
		}
	}
	p.parsed = out
	return nil
}

// parse checks one zone's settings (zone "" for the site's).
func (z PublishZone) parse(base, zone string) (publish.Site, error) {
	where := ""
	if zone != "" {
		where = fmt.Sprintf("zones.%q: ", zone)
	}
	s := publish.Site{Mode: z.Mode, Owner: -1, Group: -1, Reload: z.Reload}
	switch z.Mode {
	case "", publish.Enforce, publish.Report:
	default:
		return s, fmt.Errorf("%smode %q: want \"enforce\" or \"report\"", where, z.Mode)
	}
	if z.ZoneFile != "" {
		s.ZoneFile = z.ZoneFile
		if !filepath.IsAbs(s.ZoneFile) {
			s.ZoneFile = filepath.Join(base, s.ZoneFile)
		}
		if strings.HasSuffix(z.ZoneFile, "/") {
			return s, fmt.Errorf("%szone_file %q: names a folder: name the file (such as %s%%zone)", where, z.ZoneFile, z.ZoneFile)
		}
	}
	for _, id := range []struct {
		key, name, what string
		to              *int
		lookup          func(string) (string, error)
	}{
		{"owner", z.Owner, "user", &s.Owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}},
		{"group", z.Group, "group", &s.Group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}},
	} {
		if id.name == "" {
			continue
		}
		n, err := lookupID(id.name, id.lookup)
		if err != nil {
			return s, fmt.Errorf("%s%s %q: no such %s", where, id.key, id.name, id.what)
		}
		*id.to = n
	}
	if z.FileMode != "" {
		m, err := strconv.ParseUint(z.FileMode, 8, 32)
		if err != nil || m > 0o777 || m == 0 {
			return s, fmt.Errorf("%sfile_mode %q: want permissions in octal, such as \"0640\"", where, z.FileMode)
		}
		if m&0o444 == 0 {
			return s, fmt.Errorf("%sfile_mode %q: nobody could read the zone", where, z.FileMode)
		}
		s.FileMode = uint32(m)
	}
	for i, a := range z.Reload {
		if strings.TrimSpace(a) == "" {
			return s, fmt.Errorf("%sreload: argument %d is empty", where, i+1)
		}
	}
	return s, nil
}

// lookupID is a number as it is, or a name looked up.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	id, err := lookup(s)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(id)
}
