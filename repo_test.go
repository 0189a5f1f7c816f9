package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ods-keyguard/ods-keyguard/internal/sandbox"
)

// maxTracked is the largest file the repository may track: sources, scripts,
// schemas and small fixtures fit well below it; a build output does not.
const maxTracked = 1 << 20

// TestTrackedFiles keeps build outputs out of git: no tracked file may be
// larger than 1 MiB or hold a NUL byte in its first 8,000 bytes (git's own
// test for binary content), so an executable committed by mistake fails the
// suite instead of riding along in every clone.
func TestTrackedFiles(t *testing.T) {
	if _, err := os.Stat(".git"); err != nil {
		if sandbox.Strict {
			t.Fatalf("not a git checkout: %v", err)
		}
		t.Skip("not a git checkout")
	}
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		fi, err := os.Lstat(name)
		if err != nil {
			continue // deleted in the work tree, not yet committed
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxTracked {
			t.Errorf("%s: %d bytes tracked in git (at most %d): a build output? remove it and list it in .gitignore", name, fi.Size(), maxTracked)
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(data) > 8000 {
			data = data[:8000]
		}
		if bytes.IndexByte(data, 0) >= 0 {
			t.Errorf("%s: binary content tracked in git: a build output? remove it and list it in .gitignore", name)
		}
	}
}
