// Package when prints times and durations the one way ods-keyguard shows
// them to people.
package when

import (
	"fmt"
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

// Ago says how long ago t was, or how long until it is, seen from now:
// "3d2h ago", "in 5h".
func Ago(t, now time.Time) string {
	if t.After(now) {
		return "in " + Duration(t.Sub(now))
	}
	return Duration(now.Sub(t)) + " ago"
}
