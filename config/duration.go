package config

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

var isoDuration = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// ParseISODuration reads an ISO 8601 duration as kasp.xml writes them
// (P7D, PT12H, P1Y2M): a year is 365 days and a month 31, as OpenDNSSEC
// counts them.
func ParseISODuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || s == "PT" || s[len(s)-1] == 'T' {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration such as P7D or PT12H", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 31 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(1<<62)/int64(u) {
			return 0, fmt.Errorf("%q: too long", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}

// Schedule is the backup schedule of [backup], parsed.
type Schedule struct {
	Interval, Grace time.Duration
}

// Default backup schedule: weekly, one day's grace.
const (
	DefaultInterval = "P7D"
	DefaultGrace    = "P1D"
)

// Schedule parses [backup] interval and grace (P7D and P1D when unset).
func (c *Config) Schedule() (Schedule, error) {
	iv, gr := c.Backup.Interval, c.Backup.Grace
	if iv == "" {
		iv = DefaultInterval
	}
	if gr == "" {
		gr = DefaultGrace
	}
	var s Schedule
	var err error
	if s.Interval, err = ParseISODuration(iv); err != nil {
		return s, fmt.Errorf("config %s: [backup] interval: %w", c.Path, err)
	}
	if s.Grace, err = ParseISODuration(gr); err != nil {
		return s, fmt.Errorf("config %s: [backup] grace: %w", c.Path, err)
	}
	if s.Interval <= 0 {
		return s, fmt.Errorf("config %s: [backup] interval: must be longer than zero", c.Path)
	}
	return s, nil
}
