package sandbox

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Parent is a sandboxed BIND 9 named serving a parent zone on 127.0.0.1
// and a port of its own, with dynamic updates allowed from 127.0.0.1 only
// (no key): the registry that the DS forward commands update.
type Parent struct {
	Dir, Zone string
	Port      int
	// Signed: BIND signs the zone (dnssec-policy) and re-signs it after
	// every update; Anchor is then its key-signing DNSKEY.
	Signed bool
	Anchor *dns.DNSKEY
	// Rndc is the rndc.conf of a server with a control channel
	// (StartZonesControlled): rndc -c Rndc reload ZONE.
	Rndc string
	cmd  *exec.Cmd
	done chan error
	// conf is its named.conf; waitFor, when set, is what says it is up
	// (instead of an answer for Zone's SOA).
	conf    string
	waitFor func() bool
}

// Addr is the server's address: 127.0.0.1:PORT.
func (p *Parent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// ParentOptions shape a parent server.
type ParentOptions struct {
	Dir, Zone string
	Children  []string
	// Signed has BIND sign the zone with a CSK of its own (dnssec-policy),
	// and re-sign it after every dynamic update.
	Signed bool
	// Keys, with Signed, is another signed parent's key folder: this server
	// signs with the same key (two servers of one signed zone).
	Keys string
}

// signPolicy is the parent's dnssec-policy: one ECDSA P-256 CSK that never
// rolls, short TTLs, signatures valid two weeks.
const signPolicy = `dnssec-policy "parent" {
	keys { csk key-directory lifetime unlimited algorithm 13; };
	dnskey-ttl 60;
	max-zone-ttl 60;
	zone-propagation-delay 0;
	publish-safety 0;
	retire-safety 0;
	signatures-validity P14D;
	signatures-validity-dnskey P14D;
	signatures-refresh P5D;
};
`

// StartParent starts named serving a parent zone as o says, with its
// children delegated to it (an NS and glue each), and waits until it
// answers (signed: until it serves its DNSKEY and the signatures over it
// and over its SOA).
func StartParent(o ParentOptions) (*Parent, error) {
	dir, zone, children := o.Dir, strings.TrimSuffix(o.Zone, "."), o.Children
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var z strings.Builder
	fmt.Fprintf(&z, "$ORIGIN %s.\n$TTL 60\n@ SOA ns1 hostmaster 1 60 60 600 60\n@ NS ns1\nns1 A 127.0.0.1\n", zone)
	for _, c := range children {
		c = strings.TrimSuffix(c, ".")
		fmt.Fprintf(&z, "%s. NS ns1.%s.\nns1.%s. A 192.0.2.1\n", c, c, c)
	}
	if err := os.WriteFile(filepath.Join(dir, "parent.zone"), []byte(z.String()), 0o644); err != nil {
		return nil, err
	}
	files := map[string]string{zone: filepath.Join(dir, "parent.zone")}
	if !o.Signed {
		return StartZones(dir, 0, files, true)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	if o.Keys != "" {
		ents, err := os.ReadDir(o.Keys)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(o.Keys, e.Name()))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(keys, e.Name()), b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	p, err := startNamed(dir, 0, files, true, signPolicy, keys)
	if err != nil {
		return nil, err
	}
	p.Signed = true
	if err := p.waitSigned(20 * time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitSigned waits until the server serves its DNSKEY RRset with an RRSIG
// by a key of it, and a signed SOA, and sets p.Anchor to the KSK (or CSK).
func (p *Parent) waitSigned(within time.Duration) error {
	ask := func(t uint16) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(p.Zone), t)
		m.SetEdns0(4096, true)
		m.RecursionDesired = false
		return dns.Exchange(m, p.Addr())
	}
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(p.Dir, "named.log"))
			return fmt.Errorf("named: zone %s not signed after %s: %s", p.Zone, within, tail(string(b)))
		}
		r, err := ask(dns.TypeDNSKEY)
		if err != nil {
			continue
		}
		var ksk *dns.DNSKEY
		signed := false
		for _, rr := range r.Answer {
			if k, ok := rr.(*dns.DNSKEY); ok && k.Flags&dns.SEP != 0 {
				ksk = k
			}
		}
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok && ksk != nil && s.TypeCovered == dns.TypeDNSKEY && s.KeyTag == ksk.KeyTag() {
				signed = true
			}
		}
		if !signed {
			continue
		}
		if r, err = ask(dns.TypeSOA); err != nil {
			continue
		}
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == dns.TypeSOA {
				p.Anchor = ksk
				return nil
			}
		}
	}
}

// AnchorFile writes the parent's trust anchor, in the form delv's -a and
// named's trust-anchors take, to path.
func (p *Parent) AnchorFile(path string) error {
	if p.Anchor == nil {
		return fmt.Errorf("parent %s: not signed", p.Zone)
	}
	k := p.Anchor
	text := fmt.Sprintf("trust-anchors {\n\t%q static-key %d %d %d %q;\n};\n", dns.Fqdn(p.Zone), k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
	return os.WriteFile(path, []byte(text), 0o644)
}

// StartZones starts named in dir serving each zone from its file (zone ->
// path), on port (a free one when 0), updatable from 127.0.0.1 when update
// is set, and waits until it answers for the first zone.
func StartZones(dir string, port int, zones map[string]string, update bool) (*Parent, error) {
	return startNamed(dir, port, zones, update, "", "")
}

// StartZonesControlled is StartZones with an rndc control channel (its
// rndc.conf is Parent.Rndc) and without waiting for a zone: a zone whose
// file is not there yet (the publish gate holds it) is not served until
// rndc reload loads it. It waits until rndc status answers.
func StartZonesControlled(dir string, port int, zones map[string]string) (*Parent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	secret := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("keyguard-lab-rndc-%d-%d", port, cport)))
	key := fmt.Sprintf("key \"lab-rndc\" {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", secret)
	rndc := filepath.Join(dir, "rndc.conf")
	if err := os.WriteFile(rndc, []byte(key+fmt.Sprintf("options {\n\tdefault-key \"lab-rndc\";\n\tdefault-server 127.0.0.1;\n\tdefault-port %d;\n};\n", cport)), 0o644); err != nil {
		return nil, err
	}
	controls := key + fmt.Sprintf("controls { inet 127.0.0.1 port %d allow { 127.0.0.1; } keys { \"lab-rndc\"; }; };\n", cport)
	p, err := namedConf(dir, port, zones, false, "", "", controls)
	if err != nil {
		return nil, err
	}
	p.Rndc = rndc
	p.waitFor = func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, "rndc", "-c", rndc, "status").Run() == nil
	}
	return runNamed(p, p.conf, false)
}

// startNamed is StartZones, the zones signed by BIND with policy (a
// dnssec-policy statement named "parent") and keys in keys, when policy is
// not "".
func startNamed(dir string, port int, zones map[string]string, update bool, policy, keys string) (*Parent, error) {
	p, err := namedConf(dir, port, zones, update, policy, keys, "controls { };\n")
	if err != nil {
		return nil, err
	}
	return runNamed(p, p.conf, false)
}

// namedConf is the server's named.conf, in p.conf; controls is its
// controls statement (and the key it names).
func namedConf(dir string, port int, zones map[string]string, update bool, policy, keys, controls string) (*Parent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	names := slices.Sorted(maps.Keys(zones))
	zone := names[0]
	p := &Parent{Dir: dir, Zone: zone, Port: port}
	var conf strings.Builder
	fmt.Fprintf(&conf, `options {
	directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	recursion no;
	dnssec-validation no;
	notify no;
};
`, dir, port)
	conf.WriteString(controls)
	conf.WriteString(policy)
	for _, n := range names {
		upd := "none"
		if update {
			upd = "127.0.0.1"
		}
		sign := ""
		if policy != "" {
			sign = fmt.Sprintf("\tdnssec-policy \"parent\";\n\tkey-directory %q;\n", keys)
		}
		fmt.Fprintf(&conf, "zone %q {\n\ttype primary;\n\tfile %q;\n\tjournal %q;\n\tallow-update { %s; };\n%s};\n",
			n, zones[n], zones[n]+".jnl", upd, sign)
	}
	p.conf = conf.String()
	return p, nil
}

// StartResolver starts named in dir as a recursive resolver on a port of
// its own that forwards each zone to its server (zone -> ADDR:PORT) and
// caches nothing: what a validator asks through it is what the servers
// serve now. It validates nothing itself (delv does), and waits until it
// answers for probe, one of the zones.
func StartResolver(dir string, forwards map[string]string, probe string) (*Parent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Parent{Dir: dir, Zone: strings.TrimSuffix(probe, "."), Port: port}
	var conf strings.Builder
	fmt.Fprintf(&conf, `options {
	directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	recursion yes;
	allow-recursion { 127.0.0.1; };
	dnssec-validation no;
	notify no;
	max-cache-ttl 0;
	max-ncache-ttl 0;
	servfail-ttl 0;
};
controls { };
`, dir, port)
	for _, n := range slices.Sorted(maps.Keys(forwards)) {
		host, port, err := net.SplitHostPort(forwards[n])
		if err != nil {
			return nil, fmt.Errorf("forwarder of %s: %w", n, err)
		}
		fmt.Fprintf(&conf, "zone %q {\n\ttype forward;\n\tforward only;\n\tforwarders { %s port %s; };\n};\n", strings.TrimSuffix(n, "."), host, port)
	}
	return runNamed(p, conf.String(), true)
}

// runNamed writes conf and starts named on it, then waits until it
// answers for p.Zone's SOA (recursive: asking for recursion).
func runNamed(p *Parent, conf string, recursive bool) (*Parent, error) {
	dir := p.Dir
	confPath := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "named.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p.cmd = exec.Command("named", "-g", "-c", confPath, "-n", "1")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("named: %w", err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(filepath.Join(dir, "named.log"))
			return nil, fmt.Errorf("named exited at start (%v): %s", err, tail(string(b)))
		default:
		}
		if p.waitFor != nil {
			if p.waitFor() {
				return p, nil
			}
		} else {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(p.Zone), dns.TypeSOA)
			m.RecursionDesired = recursive
			if r, err := dns.Exchange(m, p.Addr()); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			b, _ := os.ReadFile(filepath.Join(dir, "named.log"))
			return nil, fmt.Errorf("named: no answer after 20s: %s", tail(string(b)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DS returns the DS RRset of child, as the parent serves it now.
func (p *Parent) DS(child string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(child), dns.TypeDS)
	r, err := dns.Exchange(m, p.Addr())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if ds, ok := rr.(*dns.DS); ok {
			out = append(out, fmt.Sprintf("%d %d %d %s", ds.KeyTag, ds.Algorithm, ds.DigestType, strings.ToLower(ds.Digest)))
		}
	}
	return out, nil
}

// Stop stops named and waits for it.
func (p *Parent) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	stopDaemon(p.cmd.Process.Pid, true, p.done, 5*time.Second)
	p.cmd = nil
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1.
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
