package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// origin is the name of every benchmark zone.
const origin = "bench."

// zoneCase is one signed zone: its size, algorithm and denial of existence.
type zoneCase struct {
	names int
	alg   string // "ecdsa" (ECDSAP256SHA256) or "rsa" (RSASHA256, 2048 bits)
	nsec3 bool
}

func (c zoneCase) String() string {
	denial := "NSEC"
	if c.nsec3 {
		denial = "NSEC3"
	}
	alg := "ECDSA P-256"
	if c.alg == "rsa" {
		alg = "RSA 2048"
	}
	return fmt.Sprintf("%s names, %s, %s", thousands(c.names), alg, denial)
}

func (c zoneCase) dir(cache string) string {
	denial := "nsec"
	if c.nsec3 {
		denial = "nsec3"
	}
	return filepath.Join(cache, fmt.Sprintf("%s-%s-%d", c.alg, denial, c.names))
}

// signed returns the path of the case's signed zone, generating and signing
// it first unless the cache has it, and how long dnssec-signzone took (zero
// when cached).
func (c zoneCase) signed(ctx context.Context, cache string) (string, time.Duration, error) {
	dir := c.dir(cache)
	out := filepath.Join(dir, "zone.signed")
	if _, err := os.Stat(out); err == nil {
		return out, 0, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	unsigned := filepath.Join(dir, "zone")
	if err := writeZone(unsigned, c.names); err != nil {
		return "", 0, err
	}
	keygen := []string{"-q", "-K", dir}
	if c.alg == "rsa" {
		keygen = append(keygen, "-a", "RSASHA256", "-b", "2048")
	} else {
		keygen = append(keygen, "-a", "ECDSAP256SHA256")
	}
	if err := run(ctx, "dnssec-keygen", append(append([]string{}, keygen...), "-f", "KSK", origin)...); err != nil {
		return "", 0, err
	}
	if err := run(ctx, "dnssec-keygen", append(append([]string{}, keygen...), origin)...); err != nil {
		return "", 0, err
	}
	// -S: the keys in -K; -P: no verification after signing (the benchmark
	// does that); -n 2: both cores. Signatures valid for 30 days from an
	// hour ago. The default output format, sorted in canonical order.
	args := []string{"-q", "-S", "-K", dir, "-P", "-n", "2", "-s", "now-3600", "-e", "now+2592000", "-o", origin, "-f", out + ".tmp"}
	if c.nsec3 {
		args = append(args, "-3", "-", "-H", "0")
	}
	args = append(args, unsigned)
	fmt.Fprintf(os.Stderr, "zonebench: signing %s with dnssec-signzone...\n", c)
	start := time.Now()
	if err := run(ctx, "dnssec-signzone", args...); err != nil {
		return "", 0, err
	}
	took := time.Since(start)
	if err := os.Rename(out+".tmp", out); err != nil {
		return "", 0, err
	}
	fmt.Fprintf(os.Stderr, "zonebench: signed %s in %s\n", c, took.Round(time.Second))
	os.WriteFile(filepath.Join(dir, "signing-time"), []byte(took.Round(time.Second).String()+"\n"), 0o644)
	return out, took, nil
}

// signingTime reads back how long the cached zone took to sign.
func (c zoneCase) signingTime(cache string) string {
	b, err := os.ReadFile(filepath.Join(c.dir(cache), "signing-time"))
	if err != nil {
		return "-"
	}
	return strings.TrimSpace(string(b))
}

// writeZone writes an unsigned zone of n names, each with an A record,
// besides the apex's SOA, NS and the name servers' addresses.
func writeZone(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "$TTL 3600\n%s IN SOA ns1.%s hostmaster.%s 1 7200 3600 1209600 3600\n", origin, origin, origin)
	fmt.Fprintf(w, "%s NS ns1.%s\n%s NS ns2.%s\nns1.%s A 192.0.2.1\nns2.%s A 192.0.2.2\n", origin, origin, origin, origin, origin, origin)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "n%d.%s A 10.%d.%d.%d\n", i, origin, i>>16&255, i>>8&255, i&255)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// thousands writes n with commas: 1,000,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
