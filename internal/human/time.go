// Package human holds what people read and type, written one way for all
// of ods-keyguard: times and durations (and the moments and ISO 8601
// durations given on a command line or in kasp.xml), counts with their
// nouns, and messages folded onto one line.
package human

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Layouts of times shown to people; JSON uses RFC 3339.
const (
	// Minute is a UTC time to the minute, in columns and findings.
	Minute = "2006-01-02T15:04Z"
	// Display is a time with its zone, in sentences.
	Display = "2006-01-02 15:04 MST"
	// Stamp is a UTC time to the second, in ids.
	Stamp = "20060102T150405Z"
)

// Duration prints d for people, to the minute and in the two largest units:
// 45m, 3h20m, 2d3h, 7d, 1y12d. A negative d prints as its absolute value.
func Duration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	const day = 24 * time.Hour
	years, days := int(d/(365*day)), int(d%(365*day)/day)
	hours, mins := int(d%day/time.Hour), int(d%time.Hour/time.Minute)
	pair := func(a int, ua string, b int, ub string) string {
		if b == 0 {
			return fmt.Sprintf("%d%s", a, ua)
		}
		return fmt.Sprintf("%d%s%d%s", a, ua, b, ub)
	}
	switch {
	case years > 0:
		return pair(years, "y", days, "d")
	case days > 0:
		return pair(days, "d", hours, "h")
	case hours > 0:
		return pair(hours, "h", mins, "m")
	}
	return fmt.Sprintf("%dm", mins)
}

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

// ParseLater reads a moment as ParseAt does, and refuses one before now
// (to the minute): check --at and pool fill --until judge the state as read
// now, which says nothing of an earlier moment.
func ParseLater(s string, now time.Time) (time.Time, error) {
	t, err := ParseAt(s, now)
	if err != nil {
		return t, err
	}
	if t.Before(now.Truncate(time.Minute)) {
		return t, fmt.Errorf("%q is in the past (now %s): give now or a later time", s, now.UTC().Format(Minute))
	}
	return t, nil
}

// ParseAt reads a moment given on a command line: RFC 3339, a date, a date
// and time (UTC), or an ISO 8601 duration from now (P3D).
func ParseAt(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "P") {
		d, err := ParseISODuration(s)
		return now.Add(d), err
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, YYYY-MM-DD[THH:MM] or a duration such as P3D", s)
}

// ParseBefore reads a moment as ParseAt does, but an ISO 8601 duration
// counts back from now (P400D: 400 days ago): ledger archive --before.
func ParseBefore(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "P") {
		d, err := ParseISODuration(s)
		return now.Add(-d), err
	}
	return ParseAt(s, now)
}
