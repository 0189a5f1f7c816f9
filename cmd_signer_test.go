package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/gatewait"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// The signer lab: ods-signerd signs the children beside the enforcer
// (`enforcer start -signer`), BIND serves them from its output, BIND
// signs the parent (`parent start -signed`), and delv validates the chain
// from the parent's trust anchor.

// signer sign ZONE...: wait until the enforcer is idle, have ods-signerd
// sign each zone now, wait until the signed file is as the zone's signconf
// says, copy it to $WORK/zones/ZONE.zone, and have the zone server (when
// started) serve the new files.
// signer sign -gate ZONE...: the same, but the signer's NotifyCommand (the
// publish gate) installs what passes: wait until the gate has decided the
// version the signer wrote (state_dir $WORK/state).
// signer cli ARGS...: run ods-signer in the signer's namespace.
func cmdSigner(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || (neg && args[0] != "cli") {
		ts.Fatalf("usage: signer sign [-gate] ZONE... | signer cli ARGS...")
	}
	e := ts.Value("enforcer").(*enforcerSlot).e
	if e == nil {
		ts.Fatalf("signer: the enforcer is not started (enforcer start -signer)")
	}
	switch args[0] {
	case "sign":
		if args[1] == "-gate" {
			for _, z := range args[2:] {
				ts.Check(e.Sign(z))
				if err := gatewait.Decided(ts.MkAbs("state"), z, e.Signed(z)); err != nil {
					ts.Fatalf("signer sign -gate: %v", err)
				}
			}
			return
		}
		ts.Check(os.MkdirAll(ts.MkAbs("zones"), 0o755))
		for _, z := range args[1:] {
			ts.Check(e.Sign(z))
			b, err := os.ReadFile(e.Signed(z))
			ts.Check(err)
			ts.Check(os.WriteFile(ts.MkAbs(filepath.Join("zones", z+".zone")), b, 0o644))
		}
		if slot := ts.Value("zoneserver").(*zoneSlot); slot.p != nil {
			cmdZoneServer(ts, false, []string{"restart"})
		}
	case "cli":
		out, err := e.SignerCLI(args[1:]...)
		ts.Stdout().Write([]byte(out))
		if err != nil && !neg {
			ts.Fatalf("%v", err)
		}
		if err == nil && neg {
			ts.Fatalf("ods-signer %s succeeded unexpectedly", strings.Join(args[1:], " "))
		}
	default:
		ts.Fatalf("usage: signer sign ZONE... | signer cli ARGS...")
	}
}

// validatorSlot holds a script's resolver for delv.
type validatorSlot struct{ r *sandbox.Parent }

// validate ZONE...: delv, from the parent's trust anchor ($PARENT_ANCHOR,
// `parent start -signed`), asks for each zone's DNSKEY and SOA RRsets
// through a resolver that forwards the parent zone to the first parent
// server and the zone server's zones to it, and caches nothing: each must
// be "; fully validated". ! validate ZONE: the zone's DNSKEY RRset is not
// (bogus, or insecure). delv's output is the command's stdout and stderr.
// The resolver starts at the first validate: start the parent and the
// zone server before.
func cmdValidate(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 || (neg && len(args) != 1) {
		ts.Fatalf("usage: validate ZONE... | ! validate ZONE")
	}
	anchor := ts.Getenv("PARENT_ANCHOR")
	ps := ts.Value("parent").(*parentSlot).ps
	zs := ts.Value("zoneserver").(*zoneSlot)
	if anchor == "" || len(ps) == 0 || zs.p == nil {
		ts.Fatalf("validate: start a signed parent (parent start -signed) and the zone server first")
	}
	slot := ts.Value("validator").(*validatorSlot)
	if slot.r == nil {
		fw := map[string]string{ps[0].Zone: ps[0].Addr()}
		for _, z := range zs.zones {
			fw[z] = zs.p.Addr()
		}
		r, err := sandbox.StartResolver(ts.MkAbs("resolver"), fw, ps[0].Zone)
		ts.Check(err)
		ts.Defer(r.Stop)
		slot.r = r
	}
	types := []string{"DNSKEY", "SOA"}
	if neg {
		types = types[:1]
	}
	for _, zone := range args {
		for _, typ := range types {
			out, errOut, ok := delv(ts, anchor, ps[0].Zone, slot.r.Port, zone, typ)
			ts.Stdout().Write([]byte(out))
			ts.Stderr().Write([]byte(errOut))
			switch {
			case ok && neg:
				ts.Fatalf("validate: %s %s is fully validated", zone, typ)
			case !ok && !neg:
				ts.Fatalf("validate: %s %s is not fully validated: %s", zone, typ, strings.TrimSpace(out+"\n"+errOut))
			}
		}
	}
}

// delv asks for zone's typ RRset, validating from anchor (the trust anchor
// of root, the parent zone), through the resolver on port, within 30 s.
func delv(ts *testscript.TestScript, anchor, root string, port int, zone, typ string) (stdout, stderr string, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "delv", "-a", anchor, "+root="+strings.TrimSuffix(root, ".")+".",
		"@127.0.0.1", "-p", strconv.Itoa(port), zone, typ)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		ts.Fatalf("validate: delv did not finish within 30s")
	}
	return o.String(), e.String(), err == nil && validated(o.String(), zone, typ)
}

// validated says whether delv's output says "; fully validated" with an
// RRset of the type asked.
func validated(out, zone, typ string) bool {
	ok, rrset := false, false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.TrimSpace(l) == "; fully validated":
			ok = true
		case len(f) >= 4 && strings.EqualFold(strings.TrimSuffix(f[0], "."), strings.TrimSuffix(zone, ".")) && strings.EqualFold(f[3], typ):
			rrset = true
		}
	}
	return ok && rrset
}
