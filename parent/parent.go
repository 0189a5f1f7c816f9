// Package parent reads what the parent zone really publishes: the DS RRset
// of each zone, asked of the parent's own servers or of a resolver, with
// miekg/dns and a deadline on every query.
package parent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/dnsq"
)

// Config is [parent] of the configuration.
type Config struct {
	// Nameservers are the parent zone's servers, asked directly (without
	// recursion), "HOST:PORT" each.
	Nameservers []string
	// Resolver is a recursive resolver, "ADDR:PORT", used when no
	// nameservers are given.
	Resolver string
	// Timeout bounds one query.
	Timeout time.Duration
	// Anchor, when set, is the parent zone's trust anchor: every DS answer
	// must validate from it (anchor.go), or the server counts as not read.
	Anchor *Anchor
}

// Enabled says whether the parent is to be read at all.
func (c Config) Enabled() bool { return len(c.Nameservers) > 0 || c.Resolver != "" }

// DS is one DS record at the parent.
type DS struct {
	KeyTag     int    `json:"keytag"`
	Algorithm  int    `json:"algorithm"`
	DigestType int    `json:"digest_type"`
	Digest     string `json:"digest"` // lowercase hex
}

func (d DS) String() string {
	return fmt.Sprintf("%d %d %d %s", d.KeyTag, d.Algorithm, d.DigestType, d.Digest)
}

// Answer is what the parent says of one zone.
type Answer struct {
	Zone string `json:"zone"`
	// DS is the DS RRset; empty when the parent has none (NODATA or
	// NXDOMAIN): the zone is then not validated.
	DS []DS `json:"ds"`
	// Source says who answered: "nameserver 192.0.2.1:53" or
	// "resolver 127.0.0.1:53".
	Source string `json:"source,omitempty"`
	// Disagree names servers whose DS set differs from Source's.
	Disagree []string `json:"disagree,omitempty"`
	Err      error    `json:"-"`
	Error    string   `json:"error,omitempty"`
}

// ByZone reads the DS RRset of each zone as Read does, keyed by zone name;
// nil when cfg names no servers.
func ByZone(ctx context.Context, cfg Config, zones []string) map[string]Answer {
	if !cfg.Enabled() {
		return nil
	}
	out := map[string]Answer{}
	for _, a := range Read(ctx, cfg, zones) {
		out[a.Zone] = a
	}
	return out
}

// Read asks for the DS RRset of every zone, at most eight queries at a
// time, each within cfg.Timeout and all within ctx.
func Read(ctx context.Context, cfg Config, zones []string) []Answer {
	out := make([]Answer, len(zones))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Add(1)
		go func(i int, z string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = readZone(ctx, cfg, z)
		}(i, z)
	}
	wg.Wait()
	return out
}

func readZone(ctx context.Context, cfg Config, zone string) Answer {
	a := Answer{Zone: strings.TrimSuffix(strings.ToLower(zone), "."), DS: []DS{}}
	servers, recursive := cfg.Nameservers, false
	if len(servers) == 0 {
		servers, recursive = []string{cfg.Resolver}, true
	}
	kind := "nameserver"
	if recursive {
		kind = "resolver"
	}
	var errs []error
	var sets [][]DS
	var sources []string
	for _, s := range servers {
		ds, err := query(ctx, cfg, s, a.Zone, recursive)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, s, err))
			continue
		}
		sets = append(sets, ds)
		sources = append(sources, kind+" "+s)
	}
	if len(sets) == 0 {
		a.Err = fmt.Errorf("DS of %s: %w", a.Zone, errors.Join(errs...))
		a.Error = strings.ReplaceAll(a.Err.Error(), "\n", "; ")
		return a
	}
	a.DS, a.Source = sets[0], sources[0]
	for i := 1; i < len(sets); i++ {
		if !same(sets[0], sets[i]) {
			a.Disagree = append(a.Disagree, sources[i])
		}
	}
	if a.DS == nil {
		a.DS = []DS{}
	}
	return a
}

// query asks server for zone's DS RRset, over UDP and, when truncated, TCP.
func query(ctx context.Context, cfg Config, server, zone string, recursive bool) ([]DS, error) {
	ds, _, err := queryTTL(ctx, cfg, server, zone, recursive)
	return ds, err
}

// queryTTL is query, with the DS RRset's TTL as served (the longest, should
// the records differ).
func queryTTL(ctx context.Context, cfg Config, server, zone string, recursive bool) ([]DS, time.Duration, error) {
	r, err := dnsq.Exchange(ctx, cfg.Timeout, server, zone, dns.TypeDS, recursive)
	if err != nil {
		return nil, 0, err
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, 0, fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
	}
	if !recursive && !r.Authoritative && len(r.Answer) == 0 {
		// A referral: this server does not serve the zone's parent.
		return nil, 0, errors.New("not authoritative for the parent zone (a referral)")
	}
	if cfg.Anchor != nil {
		ask := func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
			return dnsq.Exchange(ctx, cfg.Timeout, server, name, qtype, recursive)
		}
		if err := cfg.Anchor.Validate(ctx, server, ask, zone, r, time.Now()); err != nil {
			return nil, 0, fmt.Errorf("the answer does not validate from [parent] trust_anchor: %w", err)
		}
	}
	var out []DS
	var ttl time.Duration
	for _, rr := range r.Answer {
		if ds, ok := rr.(*dns.DS); ok && strings.EqualFold(strings.TrimSuffix(ds.Hdr.Name, "."), zone) {
			if t := time.Duration(ds.Hdr.Ttl) * time.Second; t > ttl {
				ttl = t
			}
			out = append(out, DS{KeyTag: int(ds.KeyTag), Algorithm: int(ds.Algorithm), DigestType: int(ds.DigestType), Digest: strings.ToLower(ds.Digest)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, ttl, nil
}

func same(a, b []DS) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Match says whether d is the DS of a key: key tag, algorithm and digest
// all match the DNSKEY made of publicKey. known is false when that cannot
// be told (no public key, or a digest type miekg/dns cannot compute): match
// is then false, never a guess on the key tag alone, which anybody can
// make collide.
func (d DS) Match(zone string, keytag, algorithm int, publicKey []byte) (match, known bool) {
	if d.KeyTag != keytag || d.Algorithm != algorithm {
		return false, true
	}
	if len(publicKey) == 0 {
		return false, false
	}
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
		Flags: 257, Protocol: 3, Algorithm: uint8(algorithm), PublicKey: encode(publicKey)}
	if int(k.KeyTag()) != keytag {
		return false, true // the public key is another key's
	}
	ds := k.ToDS(uint8(d.DigestType))
	if ds == nil {
		return false, false
	}
	return strings.EqualFold(ds.Digest, d.Digest), true
}

// ServerAnswer is what one parent server says of a zone's DS RRset.
type ServerAnswer struct {
	Server string `json:"server"`
	// DS is the DS RRset it serves: empty when it serves none; nil with
	// Err when it could not be read.
	DS []DS `json:"ds"`
	// TTL is the DS RRset's TTL as the server serves it: how long a
	// resolver may keep what it fetched; zero with no DS.
	TTL time.Duration `json:"-"`
	Err error         `json:"-"`
}

// EachServer asks every one of cfg's nameservers, directly and each within
// cfg.Timeout, for zone's DS RRset: what each serves, not what the first
// to answer says. A resolver is no use here (its cache is one server's
// past answer), so it needs Nameservers.
func EachServer(ctx context.Context, cfg Config, zone string) ([]ServerAnswer, error) {
	if len(cfg.Nameservers) == 0 {
		return nil, errors.New("[parent] nameservers is empty: the parent's servers are asked each directly (a resolver's cache cannot tell whether every server has a DS)")
	}
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	out := make([]ServerAnswer, len(cfg.Nameservers))
	var wg sync.WaitGroup
	for i, s := range cfg.Nameservers {
		wg.Add(1)
		go func(i int, s string) {
			defer wg.Done()
			ds, ttl, err := queryTTL(ctx, cfg, s, zone, false)
			if err != nil {
				err = fmt.Errorf("nameserver %s: DS of %s: %w", s, zone, err)
			} else if ds == nil {
				ds = []DS{}
			}
			out[i] = ServerAnswer{Server: s, DS: ds, TTL: ttl, Err: err}
		}(i, s)
	}
	wg.Wait()
	return out, nil
}
