// Package inventorytest gives the tests of the packages that decide
// (backup, hooks, check) a Source without a lab: the enforcer's state
// and the tokens' contents held in memory, with keys that are real key
// pairs, so that DNSKEYs, key tags and fingerprints are what a token and
// the enforcer would give. The same decisions against a real ods-enforcerd
// and SoftHSMv2 are the testscript scripts.
package inventorytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

// Fake is a Source of facts in memory. Change its fields between two
// calls as the enforcer or an operator would; Enforcer changes them as
// ods-enforcer's backup commands do.
type Fake struct {
	mu sync.Mutex
	// St is the enforcer's state; StateErr, when set, is what reading it
	// returns instead.
	St       *enforcer.State
	StateErr error
	// Holds is what each token holds, by token name; a token not in it
	// holds nothing. TokenErr is a token that cannot be read.
	Holds    map[string][]hsmcheck.Key
	TokenErr map[string]error
	// Reads counts the reads of each kind: "state" and token names.
	Reads map[string]int
}

// New is a Fake holding st, with empty tokens.
func New(st *enforcer.State) *Fake {
	return &Fake{St: st, Holds: map[string][]hsmcheck.Key{}, TokenErr: map[string]error{}, Reads: map[string]int{}}
}

// State returns f.St, or f.StateErr.
func (f *Fake) State(ctx context.Context) (*enforcer.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads["state"]++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.StateErr != nil {
		return nil, f.StateErr
	}
	return f.St, nil
}

// ZoneState returns the part of f.St that a per-zone read gives: the
// zone, the keys it uses with only its uses, and every policy.
func (f *Fake) ZoneState(ctx context.Context, zone string) (*enforcer.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads["zone "+zone]++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.StateErr != nil {
		return nil, f.StateErr
	}
	st := &enforcer.State{Policies: f.St.Policies}
	z := f.St.Zone(zone)
	if z == nil {
		return st, nil
	}
	zc := *z
	zc.Keys = nil
	st.Zones = []*enforcer.Zone{&zc}
	keys := map[*enforcer.Key]*enforcer.Key{}
	for _, u := range z.Keys {
		k := keys[u.Key]
		if k == nil {
			c := *u.Key
			c.Uses = nil
			k = &c
			keys[u.Key] = k
			st.Keys = append(st.Keys, k)
		}
		uc := *u
		uc.Key, uc.Zone = k, &zc
		k.Uses = append(k.Uses, &uc)
		zc.Keys = append(zc.Keys, &uc)
	}
	return st, nil
}

// Tokens returns what each token holds, as hsmcheck.Reader would: only
// req.IDs when given, and without the public keys that NoPublic skips.
func (f *Fake) Tokens(ctx context.Context, tokens []hsmcheck.Token, req hsmcheck.Request) []hsmcheck.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := set(req.IDs)
	public := set(req.PublicIDs)
	var out []hsmcheck.Result
	for _, t := range tokens {
		f.Reads[t.Name]++
		r := hsmcheck.Result{Token: t}
		switch {
		case ctx.Err() != nil:
			r.Err = &hsmcheck.TimeoutError{Token: t, After: time.Second}
		case f.TokenErr[t.Name] != nil:
			r.Err = f.TokenErr[t.Name]
		default:
			c := &hsmcheck.Contents{Name: t.Name, Kind: t.Kind, Repository: t.Repository, Label: t.Label,
				Serial: "fake-" + t.Name, Model: "fake", Manufacturer: "inventorytest", Keys: []hsmcheck.Key{}}
			for _, k := range f.Holds[t.Name] {
				if want != nil && !want[k.ID] {
					continue
				}
				if req.NoPublic && !public[k.ID] {
					k.PublicKey, k.Fingerprint = nil, ""
				}
				c.Keys = append(c.Keys, k)
			}
			r.Contents = c
		}
		out = append(out, r)
	}
	return out
}

func (f *Fake) String() string { return "the fake enforcer database" }

// Put puts keys on the named tokens, replacing none that are there.
func (f *Fake) Put(keys []hsmcheck.Key, tokens ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range tokens {
		f.Holds[t] = append(f.Holds[t], keys...)
	}
}

// Remove takes the key with CKA_ID id off the named tokens.
func (f *Fake) Remove(id string, tokens ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range tokens {
		keep := f.Holds[t][:0]
		for _, k := range f.Holds[t] {
			if k.ID != id {
				keep = append(keep, k)
			}
		}
		f.Holds[t] = keep
	}
}

func set(ids []string) map[string]bool {
	if ids == nil {
		return nil
	}
	m := map[string]bool{}
	for _, id := range ids {
		m[strings.ToLower(id)] = true
	}
	return m
}

// Tokens are the tokens of a repository: its own, named after it, and a
// mirror per name in mirrors.
func Tokens(repo string, mirrors ...string) []hsmcheck.Token {
	out := []hsmcheck.Token{{Name: repo, Kind: hsmcheck.KindRepository, Repository: repo, Module: "fake", Label: repo}}
	for _, m := range mirrors {
		out = append(out, hsmcheck.Token{Name: m, Kind: hsmcheck.KindMirror, Repository: repo, Module: "fake", Label: m})
	}
	return out
}

// BackupToken is a backup token named name.
func BackupToken(name string) hsmcheck.Token {
	return hsmcheck.Token{Name: name, Kind: hsmcheck.KindBackupToken, Module: "fake", Label: name}
}

// NewKey makes a real ECDSA P-256 key pair (DNSSEC algorithm 13) and
// returns it as a token holds it: CKA_ID locator, the DNSKEY public key
// and its fingerprint.
func NewKey(t testing.TB, locator string) hsmcheck.Key {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := make([]byte, 64)
	pk.X.FillBytes(pub[:32])
	pk.Y.FillBytes(pub[32:])
	return hsmcheck.Key{ID: strings.ToLower(locator), Label: locator, Type: "EC", Curve: "P-256",
		PublicKey: pub, Fingerprint: hsmcheck.FingerprintDNSKEY(pub)}
}

// DNSKEY is k's DNSKEY record in zone with flags (257 for a KSK or CSK).
func DNSKEY(zone string, flags uint16, k hsmcheck.Key) *dns.DNSKEY {
	return &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256, PublicKey: encode(k.PublicKey)}
}

// Line is the line the enforcer hands its DS hooks for k in zone: the
// DNSKEY with a cka_id comment, as ods-enforcerd 2.1 writes it.
func Line(zone string, k hsmcheck.Key) string {
	return fmt.Sprintf("%s. 3600 IN DNSKEY 257 3 13 %s ; {cka_id = %s}\n", strings.TrimSuffix(zone, "."), encode(k.PublicKey), k.ID)
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// KeyTag is k's key tag as a KSK or CSK.
func KeyTag(k hsmcheck.Key) int { return int(DNSKEY("x", 257, k).KeyTag()) }
