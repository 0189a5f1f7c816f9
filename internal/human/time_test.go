package human

import (
	"strconv"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	const day = 24 * time.Hour
	for d, want := range map[time.Duration]string{
		0: "0m", 45 * time.Minute: "45m", 3*time.Hour + 20*time.Minute: "3h20m", 3 * time.Hour: "3h",
		2*day + 3*time.Hour: "2d3h", 7 * day: "7d", 8*day + time.Hour: "8d1h", -7 * day: "7d",
		400 * day: "1y35d", 20784*day + 9*time.Hour: "56y344d", 73 * 365 * day: "73y",
	} {
		if got := Duration(d); got != want {
			t.Errorf("%v: got %q, want %q", d, got, want)
		}
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

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"P3D":                       now.Add(72 * time.Hour),
		"2026-12-01":                time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		"2026-12-01T08:30":          time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC),
		"2026-12-01T08:30:00+01:00": time.Date(2026, 12, 1, 7, 30, 0, 0, time.UTC),
	} {
		if got, err := ParseAt(in, now); err != nil || !got.Equal(want) {
			t.Errorf("ParseAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "P", "2026-13-01"} {
		if _, err := ParseAt(bad, now); err == nil {
			t.Errorf("ParseAt(%q): no error", bad)
		}
	}
}

func TestParseLater(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)
	for _, ok := range []string{"P3D", "PT0S", "2026-11-27T12:00", "2026-12-01"} {
		if _, err := ParseLater(ok, now); err != nil {
			t.Errorf("ParseLater(%q): %v", ok, err)
		}
	}
	for _, past := range []string{"2026-11-27", "2026-11-27T11:59", "2020-01-01T00:00:00Z"} {
		_, err := ParseLater(past, now)
		if err == nil || err.Error() != strconv.Quote(past)+" is in the past (now 2026-11-27T12:00Z): give now or a later time" {
			t.Errorf("ParseLater(%q): %v", past, err)
		}
	}
}
