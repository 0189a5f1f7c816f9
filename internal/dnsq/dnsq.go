// Package dnsq asks one DNS server one question, as ods-keyguard's readers
// of the parent and of the served zone do: with DNSSEC records (EDNS0, DO),
// over UDP and, when the answer is truncated, TCP, each try within the
// timeout and all within the context.
package dnsq

import (
	"context"
	"net"
	"time"

	"github.com/miekg/dns"
)

// DefaultTimeout bounds one try when the caller gives none.
const DefaultTimeout = 5 * time.Second

// Exchange asks server ("HOST" or "HOST:PORT", port 53 by default) for name
// and qtype, with recursion desired or not.
func Exchange(ctx context.Context, timeout time.Duration, server, name string, qtype uint16, recursive bool) (*dns.Msg, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = recursive
	m.SetEdns0(4096, true)
	var r *dns.Msg
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: timeout}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		var err error
		r, _, err = c.ExchangeContext(qctx, m, server)
		cancel()
		if err != nil {
			return nil, err
		}
		if !r.Truncated {
			break
		}
	}
	return r, nil
}
