package proc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child that hangs, with a grandchild that holds its stdout open, is
// killed with its whole group at the deadline, and Run returns promptly.
func TestDeadlineKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cmd := Command(ctx, "/bin/sh", "-c", "sleep 60 & echo $! > "+pidFile+"; sleep 60")
	var out strings.Builder
	cmd.Stdout = &out
	start := time.Now()
	err := Run(ctx, cmd)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitGone(t, pid)
}

// A child that exits but leaves a grandchild behind: the grandchild goes too.
func TestRunKillsWhatIsLeft(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	ctx := context.Background()
	cmd := Command(ctx, "/bin/sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $! > "+pidFile)
	if err := Run(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitGone(t, pid)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatal("no pid")
	}
	for i := 0; i < 100; i++ {
		// A zombie is gone for our purpose: reaped by init, it holds nothing.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still running", pid)
}

// CommandGrace asks first: a child that handles SIGTERM finishes and exits;
// one that ignores it is killed once the grace is over.
func TestCommandGrace(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := filepath.Join(dir, "done")
	cmd := CommandGrace(ctx, 2*time.Second, "/bin/sh", "-c", "trap 'echo finished > "+done+"; exit 0' TERM; while :; do sleep 0.05; done")
	Run(ctx, cmd)
	if b, _ := os.ReadFile(done); strings.TrimSpace(string(b)) != "finished" {
		t.Errorf("the child was not asked to stop: %q", b)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	cmd = CommandGrace(ctx2, 300*time.Millisecond, "/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done")
	err := Run(ctx2, cmd)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("a child that ignores SIGTERM was gone after %v, want the deadline plus the grace", d)
	}
}
