package publish

import (
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// Modes of the gate.
const (
	// Enforce publishes only what passes; a version that fails rule 1 is
	// held, one that fails validation never goes out.
	Enforce = "enforce"
	// Report publishes every version, as OpenDNSSEC alone would, and
	// records what enforce mode would have done.
	Report = "report"
)

// What the gate does at a held version's deadline.
const (
	// DeadlinePublish publishes the newest held version at its deadline
	// (the default): a zone whose signatures expire is bogus, which is
	// worse than a signature by a key not yet backed up.
	DeadlinePublish = "publish"
	// DeadlineHold keeps holding it: the served version's signatures
	// expire.
	DeadlineHold = "hold"
)

// Config is [publish], checked: how the gate publishes and what it waits
// for. The zero Config is a gate that is not configured.
type Config struct {
	Site Site
	// Zones are the per-zone settings, by zone name in lower case without
	// the final dot; what they leave empty is Site's.
	Zones map[string]Site
	// ReloadTimeout bounds the reload command; Timeout the whole run,
	// what the signer waits for.
	ReloadTimeout, Timeout time.Duration
	// Margin: every signature must stay valid at least this long after
	// the review; 0 is half the zone's policy's <Signatures><Refresh>.
	Margin time.Duration
	// OnDeadline is DeadlinePublish or DeadlineHold.
	OnDeadline string
}

// Site is where and how one zone (or, as Config.Site, every zone) is
// published.
type Site struct {
	// Mode is Enforce or Report.
	Mode string
	// ZoneFile is where the name servers read the zone: a path, %zone
	// standing for the zone's name (lower case, as statedir.SafeName
	// writes it: the root is "@").
	ZoneFile string
	// Owner and Group the installed file gets (-1: the process's);
	// FileMode its permissions (0 in a per-zone Site: the site's).
	Owner, Group int
	FileMode     uint32
	// Reload is the name server's reload command, an argument list with
	// %zone and %file (the installed file) replaced.
	Reload []string
}

// Configured says whether [publish] is there at all.
func (c Config) Configured() bool { return c.Site.ZoneFile != "" || len(c.Zones) > 0 }

// For is the settings of zone: its own where it has them, the site's
// otherwise, with %zone replaced in ZoneFile.
func (c Config) For(zone string) Site {
	name := ZoneName(zone)
	s := c.Site
	if z, ok := c.Zones[name]; ok {
		if z.Mode != "" {
			s.Mode = z.Mode
		}
		if z.ZoneFile != "" {
			s.ZoneFile = z.ZoneFile
		}
		if z.Owner >= 0 {
			s.Owner = z.Owner
		}
		if z.Group >= 0 {
			s.Group = z.Group
		}
		if z.FileMode != 0 {
			s.FileMode = z.FileMode
		}
		if len(z.Reload) > 0 {
			s.Reload = z.Reload
		}
	}
	s.ZoneFile = strings.ReplaceAll(s.ZoneFile, "%zone", statedir.SafeName(name))
	return s
}

// ZoneName is how the gate names a zone: lower case, without the final
// dot ("." for the root).
func ZoneName(zone string) string {
	z := strings.ToLower(strings.TrimSuffix(zone, "."))
	if z == "" {
		return "."
	}
	return z
}
