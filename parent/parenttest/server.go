// Package parenttest gives the unit tests of the packages that read the
// parent's DS (hooks, parentsync) a parent zone without a lab: a DNS
// server in the test's own process, on 127.0.0.1, answering each zone's
// DS RRset as the test sets it. Against BIND, signed and unsigned, the
// same reads are the hook_ and parent_ scripts.
package parenttest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is the parent zone's server.
type Server struct {
	mu   sync.Mutex
	ds   map[string][]dns.RR
	Addr string // HOST:PORT, for [parent] nameservers
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ds: map[string][]dns.RR{}, Addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.answer)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func (s *Server) answer(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	s.mu.Lock()
	m.Answer = append(m.Answer, s.ds[strings.ToLower(q.Question[0].Name)]...)
	s.mu.Unlock()
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60}}
	}
	w.WriteMsg(m)
}

// Serve sets what the server answers for zone's DS: the DS (SHA-256) of
// each DNSKEY line; none, no DS.
func (s *Server) Serve(t testing.TB, zone string, dnskeys ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, l := range dnskeys {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		ds := rr.(*dns.DNSKEY).ToDS(dns.SHA256)
		ds.Hdr.Ttl = 60
		rrs = append(rrs, ds)
	}
	s.ServeRR(zone, rrs...)
}

// ServeRR sets the DS RRset of zone as given, forged ones included.
func (s *Server) ServeRR(zone string, rrs ...dns.RR) {
	s.mu.Lock()
	s.ds[dns.Fqdn(strings.ToLower(zone))] = rrs
	s.mu.Unlock()
}
