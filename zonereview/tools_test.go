package zonereview

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// Zones signed by the real signers (dnssec-signzone from bind9-utils,
// ldns-signzone from ldnsutils) must pass with no finding.

// toolZone is richZone with a name spelled with an escaped capital, which
// a signer must lower-case in the canonical form.
const toolZone = "$ORIGIN example.\n" + richZone + "\\065bc TXT \"escaped capital\"\n"

// needTool finds a program: missing, it fails the test in CI and skips
// it elsewhere (sandbox.Missing decides, as everywhere in the tests).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		sandbox.Missing(t, "%s not found (Debian package %s; scripts/setup.sh installs it)", name, pkg)
	}
	return p
}

func runTool(t *testing.T, dir string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func reviewFile(t *testing.T, path string, opts Options) *Report {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Review(context.Background(), f, origin, opts)
	if err != nil {
		t.Fatalf("review: %v", err)
	}
	return rep
}

func TestDnssecSignzone(t *testing.T) {
	keygen := needTool(t, "dnssec-keygen", "bind9-utils")
	signzone := needTool(t, "dnssec-signzone", "bind9-utils")
	for _, tc := range []struct {
		name string
		alg  []string
		args []string
	}{
		{"ecdsa-nsec", []string{"-a", "ECDSAP256SHA256"}, nil},
		{"ecdsa-nsec3-salt", []string{"-a", "ECDSAP256SHA256"}, []string{"-3", "aabbccdd", "-H", "2"}},
		{"ecdsa-nsec3-optout", []string{"-a", "ECDSAP256SHA256"}, []string{"-3", "-", "-A"}},
		{"rsa2048-nsec", []string{"-a", "RSASHA256", "-b", "2048"}, nil},
		{"rsa2048-nsec3", []string{"-a", "RSASHA256", "-b", "2048"}, []string{"-3", "-"}},
		{"ed25519-nsec", []string{"-a", "ED25519"}, nil},
		{"ecdsa-nsec-unsorted", []string{"-a", "ECDSAP256SHA256"}, []string{"-O", "full"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(toolZone), 0o644); err != nil {
				t.Fatal(err)
			}
			ksk := runTool(t, dir, append(append([]string{keygen, "-q", "-K", dir}, tc.alg...), "-f", "KSK", origin)...)
			runTool(t, dir, append(append([]string{keygen, "-q", "-K", dir}, tc.alg...), origin)...)
			args := []string{signzone, "-q", "-S", "-K", dir, "-P", "-s", "now-3600", "-e", "now+2592000", "-o", origin, "-f", "zone.signed"}
			runTool(t, dir, append(append(args, tc.args...), "zone")...)
			ds := parseText(t, origin, runTool(t, dir, "dnssec-dsfromkey", "-2", filepath.Join(dir, ksk+".key")))[0].(*dns.DS)
			rep := reviewFile(t, filepath.Join(dir, "zone.signed"), Options{Margin: 7 * 24 * time.Hour, ParentDS: []*dns.DS{ds}})
			requireClean(t, rep)
			if rep.Names != 16 {
				t.Errorf("%d names, want 16", rep.Names)
			}
		})
	}
}

func TestLdnsSignzone(t *testing.T) {
	keygen := needTool(t, "ldns-keygen", "ldnsutils")
	signzone := needTool(t, "ldns-signzone", "ldnsutils")
	now := time.Now().UTC()
	stamp := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	for _, tc := range []struct {
		name string
		alg  []string
		args []string
	}{
		{"ecdsa-nsec", []string{"-a", "ECDSAP256SHA256"}, nil},
		{"ecdsa-nsec3", []string{"-a", "ECDSAP256SHA256"}, []string{"-n", "-t", "1", "-s", "beef"}},
		{"ed25519-nsec3-optout", []string{"-a", "ED25519"}, []string{"-n", "-t", "0", "-p"}},
		{"rsa2048-nsec", []string{"-a", "RSASHA256", "-b", "2048"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(toolZone), 0o644); err != nil {
				t.Fatal(err)
			}
			ksk := runTool(t, dir, append(append([]string{keygen}, tc.alg...), "-k", origin)...)
			zsk := runTool(t, dir, append(append([]string{keygen}, tc.alg...), origin)...)
			args := []string{signzone, "-i", stamp(now.Add(-time.Hour)), "-e", stamp(now.Add(30 * 24 * time.Hour)), "-o", origin, "-f", "zone.signed"}
			args = append(append(args, tc.args...), "zone", ksk, zsk)
			runTool(t, dir, args...)
			dsText, err := os.ReadFile(filepath.Join(dir, ksk+".ds"))
			if err != nil {
				t.Fatal(err)
			}
			ds := parseText(t, origin, string(dsText))[0].(*dns.DS)
			rep := reviewFile(t, filepath.Join(dir, "zone.signed"), Options{Margin: 7 * 24 * time.Hour, ParentDS: []*dns.DS{ds}})
			requireClean(t, rep)
			if rep.Names != 16 {
				t.Errorf("%d names, want 16", rep.Names)
			}
		})
	}
}
