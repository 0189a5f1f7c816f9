package config

import (
	"fmt"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

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
	if s.Interval, err = human.ParseISODuration(iv); err != nil {
		return s, fmt.Errorf("config %s: [backup] interval: %w", c.Path, err)
	}
	if s.Grace, err = human.ParseISODuration(gr); err != nil {
		return s, fmt.Errorf("config %s: [backup] grace: %w", c.Path, err)
	}
	if s.Interval <= 0 {
		return s, fmt.Errorf("config %s: [backup] interval: must be longer than zero", c.Path)
	}
	return s, nil
}
