// Package p11quirks builds the quirks module: a PKCS#11 module that passes
// every call to a real one (SoftHSMv2 in the tests) and behaves, as its
// knobs say, the way network and PCIe HSMs do and soft tokens do not
// (README.md lists the knobs). Lab only: the release binary never imports
// it, and the module is built from p11quirks.c with gcc into a cache folder,
// never committed as a binary nor installed.
package p11quirks

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

//go:embed csrc/p11quirks.c
var source []byte

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// Build compiles the module once per process into a cache folder (under
// the system's temporary folder, named by the source's hash, so that the
// scripts of one run and the runs after it share one build) and returns
// its path.
func Build() (string, error) {
	buildOnce.Do(func() {
		built, buildErr = BuildIn(filepath.Join(os.TempDir(), "ods-keyguard-p11quirks"))
	})
	return built, buildErr
}

// BuildIn compiles the module into dir, unless a build of this source is
// there already, and returns its path.
func BuildIn(dir string) (string, error) {
	sum := sha256.Sum256(source)
	so := filepath.Join(dir, "p11quirks-"+hex.EncodeToString(sum[:6])+".so")
	if _, err := os.Stat(so); err == nil {
		return so, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "p11quirks.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "p11quirks.so")
	cmd := exec.Command("gcc", "-Wall", "-O1", "-shared", "-fPIC", "-o", out, src, "-ldl", "-lpthread", "-I/usr/include/p11-kit-1")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc p11quirks.c: %v: %s", err, strings.TrimSpace(string(msg)))
	}
	// A rename: a build running beside this one never sees half a file.
	if err := os.Rename(out, so); err != nil {
		return "", err
	}
	return so, nil
}

// Counts is one process's line in a count file: how many times it called
// each wrapped function (and "calls", all of them together).
type Counts map[string]int

// ReadCounts reads the count file that the knob count = FILE names: a line
// per process that finalized the module or exited.
func ReadCounts(path string) ([]Counts, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Counts
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		c := Counts{}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			n, err := strconv.Atoi(v)
			if !ok || err != nil {
				return nil, fmt.Errorf("%s: bad count %q", path, f)
			}
			c[k] = n
		}
		out = append(out, c)
	}
	return out, nil
}

// Sum adds up the counts of every process.
func Sum(cs []Counts) Counts {
	s := Counts{}
	for _, c := range cs {
		for k, v := range c {
			if k != "pid" {
				s[k] += v
			}
		}
	}
	return s
}
