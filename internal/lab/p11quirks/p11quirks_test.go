package p11quirks_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/p11quirks"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// token makes a SoftHSMv2 token "t" with three EC key pairs and returns
// the environment that opens it through the quirks module, and the module.
func token(t *testing.T) (string, []string) {
	sandbox.NeedTools(t, "gcc", "softhsm2-util", "pkcs11-tool")
	if _, err := os.Stat(sandbox.Module); err != nil {
		sandbox.Missing(t, "%v", err)
	}
	so, err := p11quirks.Build()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := sandbox.SoftHSM(filepath.Join(t.TempDir(), "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.InitToken(conf, "t", sandbox.PIN); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"01", "02", "03"} {
		if err := sandbox.PKCS11Tool(conf, "t", sandbox.PIN, "--keypairgen", "--key-type", "EC:prime256v1", "--id", id, "--label", id); err != nil {
			t.Fatal(err)
		}
	}
	return so, []string{"SOFTHSM2_CONF=" + conf, "P11QUIRKS_MODULE=" + sandbox.Module}
}

// tool runs pkcs11-tool through the module with the knobs, within limit.
func tool(t *testing.T, so string, env []string, knobs string, limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pkcs11-tool", append([]string{"--module", so, "--token-label", "t", "--pin", sandbox.PIN}, args...)...)
	cmd.Env = append(append(os.Environ(), env...), "P11QUIRKS="+knobs)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestKnobs(t *testing.T) {
	so, env := token(t)
	dir := t.TempDir()

	// Without knobs the module passes everything through.
	out, err := tool(t, so, env, "", time.Minute, "-O", "--type", "privkey")
	if err != nil || strings.Count(out, "Private Key Object") != 3 {
		t.Fatalf("plain: %v: %s", err, out)
	}

	// find_batch = 1 hands back one handle per C_FindObjects, and every
	// key is still found by a caller that goes on until a count of 0;
	// count writes the calls.
	counts := filepath.Join(dir, "counts")
	out, err = tool(t, so, env, "find_batch=1;count="+counts, time.Minute, "-O", "--type", "privkey")
	if err != nil || strings.Count(out, "Private Key Object") != 3 {
		t.Fatalf("find_batch: %v: %s", err, out)
	}
	cs, err := p11quirks.ReadCounts(counts)
	if err != nil || len(cs) != 1 {
		t.Fatalf("counts: %v %v", cs, err)
	}
	if c := cs[0]; c["C_Login"] != 1 || c["C_FindObjects"] < 4 || c["calls"] < c["C_GetAttributeValue"] {
		t.Errorf("counts: %v", c)
	}

	// fail answers the chosen call with the chosen error.
	out, err = tool(t, so, env, "fail=C_Login:CKR_DEVICE_REMOVED", time.Minute, "-O")
	if err == nil || !strings.Contains(out, "CKR_DEVICE_REMOVED") {
		t.Errorf("fail: %v: %s", err, out)
	}
	// fail *#N+ is a device gone for good from the Nth call on.
	out, err = tool(t, so, env, "fail=*#6+:CKR_TOKEN_NOT_PRESENT", time.Minute, "-O")
	if err == nil || !strings.Contains(out, "CKR_TOKEN_NOT_PRESENT") {
		t.Errorf("fail onward: %v: %s", err, out)
	}

	// max_sessions refuses a session past the limit.
	out, err = tool(t, so, env, "max_sessions=1", time.Minute, "-O")
	if err != nil {
		t.Errorf("max_sessions 1, one session: %v: %s", err, out)
	}

	// latency delays every call; hang never returns.
	start := time.Now()
	if out, err := tool(t, so, env, "latency=50ms", time.Minute, "-O", "--type", "privkey"); err != nil {
		t.Fatalf("latency: %v: %s", err, out)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("latency 50ms: pkcs11-tool -L took %s", el)
	}
	start = time.Now()
	if _, err := tool(t, so, env, "hang=C_GetTokenInfo", 2*time.Second, "-O"); err == nil {
		t.Errorf("hang: pkcs11-tool returned")
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("hang: returned after %s", el)
	}

	// A knob it does not know fails C_Initialize, naming it.
	out, err = tool(t, so, env, "lantency=2ms", time.Minute, "-O")
	if err == nil || !strings.Contains(out, "p11quirks: unknown knob: lantency") {
		t.Errorf("unknown knob: %v: %s", err, out)
	}

	// The knobs file, P11QUIRKS_CONF, reads the same knobs one a line.
	file := filepath.Join(dir, "quirks.conf")
	if err := os.WriteFile(file, []byte("# a comment\nfail = C_Login : CKR_DEVICE_ERROR\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = tool(t, so, append(env, "P11QUIRKS_CONF="+file), "", time.Minute, "-O")
	if err == nil || !strings.Contains(out, "CKR_DEVICE_ERROR") {
		t.Errorf("file: %v: %s", err, out)
	}
}
