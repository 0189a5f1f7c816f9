package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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
	cmd       *exec.Cmd
	done      chan error
}

// Addr is the server's address: 127.0.0.1:PORT.
func (p *Parent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// StartParent starts named in dir serving zone, with children delegated to
// it (an NS and glue each), and waits until it answers.
func StartParent(dir, zone string, children []string) (*Parent, error) {
	zone = strings.TrimSuffix(zone, ".")
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
	return StartZones(dir, 0, map[string]string{zone: filepath.Join(dir, "parent.zone")}, true)
}

// StartZones starts named in dir serving each zone from its file (zone ->
// path), on port (a free one when 0), updatable from 127.0.0.1 when update
// is set, and waits until it answers for the first zone.
func StartZones(dir string, port int, zones map[string]string, update bool) (*Parent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	var names []string
	for n := range zones {
		names = append(names, n)
	}
	sort.Strings(names)
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
controls { };
`, dir, port)
	for _, n := range names {
		upd := "none"
		if update {
			upd = "127.0.0.1"
		}
		fmt.Fprintf(&conf, "zone %q {\n\ttype primary;\n\tfile %q;\n\tjournal %q;\n\tallow-update { %s; };\n};\n",
			n, zones[n], zones[n]+".jnl", upd)
	}
	confPath := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
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
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
		if r, err := dns.Exchange(m, p.Addr()); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return p, nil
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
