package sandbox

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// ods-signerd 2.1 always listens on /run/opendnssec/engine.sock (conf.rng
// has no <Signer><SocketFile>), and the enforcer's `ods-signer update`
// calls go there. To run a signer of the sandbox's own without touching
// the host's /run/opendnssec, the enforcer and the signer both run in a
// mount namespace of their own (unshare -m, private propagation) in which
// the sandbox's run folder is bind-mounted on /run/opendnssec. A process
// holds the namespace (sleep); the daemons and every ods-signer call enter
// it with nsenter.

// namespace is a private mount namespace held by a sleeping process.
type namespace struct {
	cmd  *exec.Cmd
	done chan error
}

// nsScript mounts the run folder ($1) on /run/opendnssec inside the new
// namespace. Where the host has no /run/opendnssec, a tmpfs on /run (in
// the namespace only) makes room for it: nothing is made on the host.
const nsScript = `set -e
if [ ! -d /run/opendnssec ]; then
	mount -t tmpfs -o size=1m,mode=0755 sandbox /run
	mkdir /run/opendnssec
fi
mount --bind "$1" /run/opendnssec
echo ready
exec sleep infinity
`

// newNamespace makes the namespace, with run mounted on /run/opendnssec in
// it, and waits until the mount is done.
func newNamespace(run, logPath string) (*namespace, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", nsScript, "sh", run)
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	ns := &namespace{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
		ns.done <- cmd.Wait()
	}()
	select {
	case ok := <-ready:
		if ok {
			return ns, nil
		}
	case <-time.After(10 * time.Second):
	}
	ns.close()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("unshare: no private /run/opendnssec: %s", tail(string(b)))
}

// command is exec.Command, run inside the namespace when there is one.
func (ns *namespace) command(prog string, args ...string) *exec.Cmd {
	if ns == nil {
		return exec.Command(prog, args...)
	}
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(ns.cmd.Process.Pid), "-m", "--", prog}, args...)...)
}

func (ns *namespace) close() {
	if ns == nil || ns.cmd == nil {
		return
	}
	syscall.Kill(-ns.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-ns.done:
	case <-time.After(5 * time.Second):
	}
	ns.cmd = nil
}

// startSigner starts ods-signerd in the namespace and waits for its socket.
func (e *Enforcer) startSigner() error {
	log, err := os.OpenFile(filepath.Join(e.Dir, "signerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	sock := filepath.Join(e.Dir, "run", "engine.sock")
	os.Remove(sock)
	cmd := e.ns.command("ods-signerd", "-c", e.Conf, "-d")
	cmd.Env = e.env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fmt.Errorf("ods-signerd: %w", err)
	}
	e.signer, e.signerDone = cmd, make(chan error, 1)
	go func() { e.signerDone <- cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-e.signerDone:
			e.signer = nil
			return fmt.Errorf("ods-signerd exited at start (%v): %s", err, e.signerTail())
		default:
		}
		// The socket is the same file seen from outside the namespace.
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
	}
	e.stopSigner()
	return fmt.Errorf("ods-signerd: no socket after 30s: %s", e.signerTail())
}

func (e *Enforcer) signerTail() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "signerd.log"))
	return tail(string(b))
}

func (e *Enforcer) stopSigner() {
	if e.signer == nil {
		return
	}
	stopDaemon(e.signer.Process.Pid, false, e.signerDone, 10*time.Second)
	e.signer = nil
}

// SignerCLI runs ods-signer ARGS in the namespace, within 30 seconds.
func (e *Enforcer) SignerCLI(args ...string) (string, error) {
	if e.ns == nil {
		return "", errors.New("no signer in this sandbox")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := e.ns.command("ods-signer", args...)
	cmd := exec.CommandContext(ctx, in.Path, in.Args[1:]...)
	cmd.Env = e.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ods-signer %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Signed is the path of zone's signed file, as the signer writes it.
func (e *Enforcer) Signed(zone string) string { return filepath.Join(e.Dir, "signed", zone) }

// signconfKeys reads the keys of a signconf.
type signconfKeys struct {
	Keys []struct {
		KSK     *struct{} `xml:"KSK"`     // signs the DNSKEY RRset
		Publish *struct{} `xml:"Publish"` // its DNSKEY is published
	} `xml:"Zone>Keys>Key"`
}

// Sign waits until the enforcer is idle (its signconf written), has the
// signer read the signconf and sign zone now, and waits until the signer has written the signed
// zone as that signconf says: as many DNSKEYs as keys to publish, and an
// RRSIG over the DNSKEY RRset by each key that signs it.
func (e *Enforcer) Sign(zone string) error {
	deadline := time.Now().Add(60 * time.Second)
	if err := e.WaitIdle(deadline); err != nil {
		return err
	}
	b, err := os.ReadFile(e.signconf(zone))
	if err != nil {
		return err
	}
	var sc signconfKeys
	if err := xml.Unmarshal(b, &sc); err != nil {
		return fmt.Errorf("signconf of %s: %w", zone, err)
	}
	publish, ksk := 0, 0
	for _, k := range sc.Keys {
		if k.Publish != nil {
			publish++
		}
		if k.KSK != nil {
			ksk++
		}
	}
	start := time.Now()
	// The signer reads a signconf, or the zone list, again only when its
	// mtime is later, in whole seconds, than when it last read it, and the
	// enforcer may write one twice in a second (a zone added, a leap): move
	// the mtime on a second, then have the signer read it (update), as the
	// enforcer's own update does: a signconf read anew has the zone signed
	// anew. (Not ods-signer sign: the signer keeps one task a zone, and an
	// immediate sign replaces the signconf task that update scheduled.)
	later := func(path string) {
		fi, err := os.Stat(path)
		if err != nil {
			return
		}
		// Later than what the signer last read: the file's mtime now, or
		// what this moved it to before, whichever is later (the enforcer
		// may have written it since, at a time before that).
		t := fi.ModTime()
		if last := e.touched[path]; last.After(t) {
			t = last
		}
		t = t.Truncate(time.Second).Add(time.Second)
		if os.Chtimes(path, t, t) == nil {
			if e.touched == nil {
				e.touched = map[string]time.Time{}
			}
			e.touched[path] = t
		}
	}
	later(e.signconf(zone))
	for {
		out, err := e.SignerCLI("update", zone)
		if err == nil {
			break
		}
		// A zone the signer has not read from the zone list yet.
		if !strings.Contains(out, "not found") || time.Now().After(start.Add(10*time.Second)) {
			return err
		}
		later(filepath.Join(e.Dir, "enforcer", "zones.xml"))
		if _, err := e.SignerCLI("update", "--all"); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got string
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fi, err := os.Stat(e.Signed(zone))
		if err != nil || fi.ModTime().Before(start) {
			continue
		}
		keys, sigs, err := countDNSKEY(e.Signed(zone))
		if err != nil {
			continue
		}
		if keys == publish && sigs == ksk {
			return nil
		}
		got = fmt.Sprintf("%d DNSKEYs and %d RRSIGs over them", keys, sigs)
	}
	return fmt.Errorf("zone %s: signed file not as its signconf says (%d DNSKEYs, %d KSKs) after 60s: %s; %s", zone, publish, ksk, got, e.signerTail())
}

// countDNSKEY counts the DNSKEY records of a zone file and the RRSIGs
// covering them.
func countDNSKEY(path string) (keys, sigs int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, "", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		switch r := rr.(type) {
		case *dns.DNSKEY:
			keys++
		case *dns.RRSIG:
			if r.TypeCovered == dns.TypeDNSKEY {
				sigs++
			}
		}
	}
	return keys, sigs, zp.Err()
}
