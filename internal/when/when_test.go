package when

import (
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

func TestAgo(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	if got := Ago(now.Add(-26*time.Hour), now); got != "1d2h ago" {
		t.Errorf("got %q", got)
	}
	if got := Ago(now.Add(5*time.Hour), now); got != "in 5h" {
		t.Errorf("got %q", got)
	}
}
