package sandbox

import (
	"runtime"
	"testing"
)

// Outputs of `ods-enforcer queue` as ods-enforcerd 2.1.12 prints them.
func TestIdle(t *testing.T) {
	for _, tt := range []struct {
		name, queue string
		idle        bool
	}{
		{"busy, nothing queued", "There are 0 tasks scheduled.\nIt is now Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\n", false},
		{"busy with a task", "There is 1 task scheduled.\nIt is now Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\nNext task scheduled Fri Nov 27 10:48:31 2026 (1795776511 seconds since epoch)\n", false},
		{"idle, next in two minutes", "All worker threads idle.\nThere is 1 task scheduled.\nIt is now Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\nNext task scheduled Fri Nov 27 10:48:31 2026 (1795776511 seconds since epoch)\nOn Fri Nov 27 10:48:31 2026 I will enforce zone example.com\n", true},
		{"idle, a task due now", "All worker threads idle.\nThere is 1 task scheduled.\nIt is now Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\nNext task scheduled Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\n", false},
		{"idle, empty", "All worker threads idle.\nThere are 0 tasks scheduled.\nIt is now Fri Nov 27 10:46:31 2026 (1795776391 seconds since epoch)\n", true},
	} {
		if got := Idle(tt.queue); got != tt.idle {
			t.Errorf("%s: Idle = %v, want %v", tt.name, got, tt.idle)
		}
	}
}

// tb records what NeedTools does to a test; like testing's, Fatalf and
// Skipf end the goroutine.
type tb struct {
	testing.TB
	fatal, skip bool
}

func (r *tb) Helper()               {}
func (r *tb) Fatalf(string, ...any) { r.fatal = true; runtime.Goexit() }
func (r *tb) Skipf(string, ...any)  { r.skip = true; runtime.Goexit() }

func needTools(r *tb, tools ...string) {
	done := make(chan struct{})
	go func() { defer close(done); NeedTools(r, tools...) }()
	<-done
}

// Under CI a missing tool fails the test; elsewhere it skips it.
func TestNeedToolsStrictInCI(t *testing.T) {
	saved := Strict
	defer func() { Strict = saved }()
	for _, strict := range []bool{true, false} {
		Strict = strict
		r := &tb{}
		needTools(r, "no-such-tool-anywhere")
		if r.fatal != strict || r.skip == strict {
			t.Errorf("Strict %v: fatal %v, skip %v", strict, r.fatal, r.skip)
		}
		r = &tb{}
		needTools(r, "sh")
		if r.fatal || r.skip {
			t.Errorf("Strict %v: a tool on PATH: fatal %v, skip %v", strict, r.fatal, r.skip)
		}
	}
}
