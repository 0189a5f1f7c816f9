// Package servedzone reads each zone as its own servers serve it, the DNSKEY
// RRset and its signatures, and compares it with what the enforcer and the
// HSMs hold: the chain as the world sees it. It would catch a signer that
// publishes a DNSKEY set its signatures do not match, a key no HSM holds, a
// zone signed with a key that was never backed up, a DS at the parent that
// points at no served key, and signatures about to expire.
package servedzone

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/internal/dnsq"
	"github.com/ods-keyguard/ods-keyguard/internal/human"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// Config is [zone] of the configuration.
type Config struct {
	// Nameservers serve the zones, "HOST:PORT" each, asked directly.
	Nameservers []string
	// Timeout bounds one query.
	Timeout time.Duration
	// Warn: a DNSKEY RRset signature expiring within it is a warning;
	// zero: the policy's signature refresh.
	Warn time.Duration
}

// Enabled says whether the served zones are read.
func (c Config) Enabled() bool { return len(c.Nameservers) > 0 }

// Answer is what one server serves of one zone.
type Answer struct {
	Server string
	DNSKEY []*dns.DNSKEY
	RRSIG  []*dns.RRSIG // over the DNSKEY RRset
	Err    error
}

// Read asks every server for every zone's DNSKEY RRset with its
// signatures, at most eight queries at a time, each within cfg.Timeout and
// all within ctx; by lowercase zone name.
func Read(ctx context.Context, cfg Config, zones []string) map[string][]Answer {
	out := map[string][]Answer{}
	if !cfg.Enabled() {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, z := range zones {
		z = strings.TrimSuffix(strings.ToLower(z), ".")
		out[z] = make([]Answer, len(cfg.Nameservers))
		for i, s := range cfg.Nameservers {
			wg.Add(1)
			go func(z string, i int, s string) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				a := query(ctx, cfg.Timeout, s, z)
				mu.Lock()
				out[z][i] = a
				mu.Unlock()
			}(z, i, s)
		}
	}
	wg.Wait()
	return out
}

func query(ctx context.Context, timeout time.Duration, server, zone string) Answer {
	a := Answer{Server: server}
	r, err := dnsq.Exchange(ctx, timeout, server, zone, dns.TypeDNSKEY, false)
	if err != nil {
		a.Err = fmt.Errorf("server %s: DNSKEY of %s: %w", server, zone, err)
		return a
	}
	if r.Rcode != dns.RcodeSuccess {
		a.Err = fmt.Errorf("server %s: DNSKEY of %s: answered %s", server, zone, dns.RcodeToString[r.Rcode])
		return a
	}
	if !r.Authoritative {
		a.Err = fmt.Errorf("server %s: DNSKEY of %s: not authoritative for the zone", server, zone)
		return a
	}
	for _, rr := range r.Answer {
		if !strings.EqualFold(strings.TrimSuffix(rr.Header().Name, "."), zone) {
			continue
		}
		switch v := rr.(type) {
		case *dns.DNSKEY:
			a.DNSKEY = append(a.DNSKEY, v)
		case *dns.RRSIG:
			if v.TypeCovered == dns.TypeDNSKEY {
				a.RRSIG = append(a.RRSIG, v)
			}
		}
	}
	return a
}

// Finding is one thing wrong with a served zone.
type Finding struct {
	Critical bool // else a warning
	Unknown  bool // could not be established
	Zone     string
	Text     string
}

// Input is what Compare judges.
type Input struct {
	State         *enforcer.State
	Served        map[string][]Answer // by lowercase zone
	Parent        map[string]parent.Answer
	Coverage      ledger.Coverage
	RequireBackup map[string]bool
	// PublicKeys are the public keys read from every token, by lowercase
	// locator, and per locator how many of its repository's tokens hold
	// it (of Tokens).
	PublicKeys map[string][]byte
	Holders    map[string]int
	Tokens     map[string]int // repository -> tokens (the token and its mirrors)
	// TokensRead is false when a token could not be read: a key not found
	// is then not known to be missing.
	TokensRead bool
	Warn       time.Duration
	Now        time.Time
}

// Compare says what is wrong with each served zone, by the enforcer's and
// the HSMs' lights.
func Compare(in Input) []Finding {
	var out []Finding
	for _, z := range in.State.Zones {
		answers, ok := in.Served[strings.ToLower(z.Name)]
		if !ok {
			continue
		}
		out = append(out, zone(in, z, answers)...)
	}
	return out
}

func zone(in Input, z *enforcer.Zone, answers []Answer) []Finding {
	var out []Finding
	add := func(crit bool, format string, args ...any) {
		out = append(out, Finding{Critical: crit, Zone: z.Name, Text: fmt.Sprintf(format, args...)})
	}
	unknown := func(format string, args ...any) {
		out = append(out, Finding{Unknown: true, Zone: z.Name, Text: fmt.Sprintf(format, args...)})
	}
	// The enforcer's keys of the zone, by public key.
	byPub := map[string]*enforcer.Use{}
	for _, u := range z.Keys {
		if pk := in.PublicKeys[strings.ToLower(u.Key.Locator)]; len(pk) > 0 {
			byPub[string(pk)] = u
		}
	}
	warn := in.Warn
	if warn <= 0 && z.Policy != nil {
		warn = z.Policy.SignaturesRefresh
	}
	for _, a := range answers {
		if a.Err != nil {
			unknown("zone %s: cannot read what it serves: %v", z.Name, a.Err)
			continue
		}
		if len(a.DNSKEY) == 0 {
			add(true, "zone %s: server %s serves no DNSKEY: the zone is not signed there", z.Name, a.Server)
			continue
		}
		keys := map[*dns.DNSKEY]*enforcer.Use{}
		for _, k := range a.DNSKEY {
			raw, err := base64.StdEncoding.DecodeString(k.PublicKey)
			if err != nil {
				add(true, "zone %s: server %s serves DNSKEY %d/%d with a public key that is not base64", z.Name, a.Server, k.KeyTag(), k.Algorithm)
				continue
			}
			u := byPub[string(raw)]
			switch {
			case u == nil && !in.TokensRead:
				unknown("zone %s: server %s serves DNSKEY %d/%d (flags %d); whether it is a key the enforcer has on its HSMs cannot be told: a token could not be read",
					z.Name, a.Server, k.KeyTag(), k.Algorithm, k.Flags)
			case u == nil:
				add(true, "zone %s: server %s serves DNSKEY %d/%d (flags %d), which is no key the enforcer has for the zone on any HSM: whoever signs with it, ods-keyguard cannot back it up",
					z.Name, a.Server, k.KeyTag(), k.Algorithm, k.Flags)
			default:
				keys[k] = u
				if n, want := in.Holders[strings.ToLower(u.Key.Locator)], in.Tokens[u.Key.Repository]; in.TokensRead && n < want {
					add(true, "zone %s: server %s serves DNSKEY %d (%s, key %s), which only %d of the %s of repository %s hold",
						z.Name, a.Server, k.KeyTag(), u.Role, u.Key.Locator, n, human.Count(want, "token"), u.Key.Repository)
				}
			}
		}
		// The signatures over the DNSKEY RRset: each must verify, be made
		// by a served SEP key that a confirmed ceremony covers, and not
		// expire before the signer renews it.
		rrset := make([]dns.RR, 0, len(a.DNSKEY))
		for _, k := range a.DNSKEY {
			rrset = append(rrset, k)
		}
		valid := 0
		for _, sig := range a.RRSIG {
			var signer *dns.DNSKEY
			for _, k := range a.DNSKEY {
				if k.KeyTag() == sig.KeyTag && k.Algorithm == sig.Algorithm {
					if sig.Verify(k, rrset) == nil {
						signer = k
						break
					}
				}
			}
			if signer == nil {
				add(true, "zone %s: server %s serves an RRSIG over its DNSKEY RRset by key tag %d that verifies with no DNSKEY it serves: the signatures do not match the DNSKEY set",
					z.Name, a.Server, sig.KeyTag)
				continue
			}
			exp := time.Unix(int64(sig.Expiration), 0).UTC()
			if !sig.ValidityPeriod(in.Now) {
				add(true, "zone %s: server %s serves an RRSIG over its DNSKEY RRset by key tag %d that is not valid now (%s to %s)",
					z.Name, a.Server, sig.KeyTag, time.Unix(int64(sig.Inception), 0).UTC().Format(time.RFC3339), exp.Format(time.RFC3339))
				continue
			}
			if signer.Flags&dns.SEP != 0 {
				valid++
			}
			if warn > 0 && exp.Sub(in.Now) < warn {
				add(false, "zone %s: server %s serves an RRSIG over its DNSKEY RRset by key tag %d that expires %s, within %s: the signer has not renewed it",
					z.Name, a.Server, sig.KeyTag, exp.Format(time.RFC3339), warn)
			}
			u := keys[signer]
			if u == nil || signer.Flags&dns.SEP == 0 {
				continue
			}
			if !rules.BackedUp(in.Coverage, in.RequireBackup, u.Key) {
				add(true, "zone %s: server %s serves the DNSKEY RRset signed by %s %d (key %s), which is not backed up: %s (rule 1, seen from outside)",
					z.Name, a.Server, u.Role, u.KeyTag, u.Key.Locator, rules.NotBackedUp(in.Coverage, in.RequireBackup, u.Key))
			}
		}
		if valid == 0 {
			add(true, "zone %s: server %s serves no valid RRSIG over its DNSKEY RRset by a KSK or CSK it serves: validators fail the zone", z.Name, a.Server)
		}
		// Every DS at the parent must point at a key this server serves.
		pa, ok := in.Parent[strings.ToLower(z.Name)]
		if !ok || pa.Err != nil {
			continue
		}
		for _, ds := range pa.DS {
			match, known := false, true
			for _, k := range a.DNSKEY {
				if k.Flags&dns.SEP == 0 {
					continue
				}
				raw, err := base64.StdEncoding.DecodeString(k.PublicKey)
				if err != nil {
					continue
				}
				m, kn := ds.Match(z.Name, int(k.KeyTag()), int(k.Algorithm), raw)
				match = match || m
				known = known && kn
			}
			switch {
			case match:
			case !known:
				unknown("zone %s: whether DS %d/%d at the parent matches a DNSKEY that server %s serves cannot be told (digest type %d)", z.Name, ds.KeyTag, ds.Algorithm, a.Server, ds.DigestType)
			default:
				add(true, "zone %s: the parent has DS %d/%d %d %s, which matches no DNSKEY that server %s serves: validators that take that DS find no key for it",
					z.Name, ds.KeyTag, ds.Algorithm, ds.DigestType, ds.Digest, a.Server)
			}
		}
	}
	return out
}
