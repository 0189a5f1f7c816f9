package servedzone

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

type testKey struct {
	priv *ecdsa.PrivateKey
	rr   *dns.DNSKEY
	raw  []byte
}

func newKey(t *testing.T, flags uint16) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := append(priv.PublicKey.X.FillBytes(make([]byte, 32)), priv.PublicKey.Y.FillBytes(make([]byte, 32))...)
	rr := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 60},
		Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256, PublicKey: base64.StdEncoding.EncodeToString(raw)}
	return testKey{priv, rr, raw}
}

func sign(t *testing.T, k testKey, rrset []dns.RR, now time.Time, validity time.Duration) *dns.RRSIG {
	t.Helper()
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 60},
		Algorithm: dns.ECDSAP256SHA256, KeyTag: k.rr.KeyTag(), SignerName: "a.example.",
		Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(validity).Unix())}
	if err := sig.Sign(k.priv, rrset); err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestCompare(t *testing.T) {
	now := time.Now().UTC()
	ksk, zsk, stray := newKey(t, 257), newKey(t, 256), newKey(t, 257)
	z := &enforcer.Zone{Name: "a.example", Policy: &enforcer.Policy{SignaturesRefresh: 72 * time.Hour}}
	use := func(k testKey, role enforcer.Role, loc string) *enforcer.Use {
		return &enforcer.Use{Zone: z, Role: role, KeyTag: int(k.rr.KeyTag()), Key: &enforcer.Key{Locator: loc, Repository: "R", Algorithm: 13}}
	}
	z.Keys = []*enforcer.Use{use(ksk, enforcer.KSK, "01"), use(zsk, enforcer.ZSK, "02")}
	st := &enforcer.State{Zones: []*enforcer.Zone{z}}
	covered := ledger.Coverage{"R/01": &ledger.Ceremony{ID: "c1"}, "R/02": &ledger.Ceremony{ID: "c1"}}
	ds := ksk.rr.ToDS(dns.SHA256)
	good := parent.DS{KeyTag: int(ds.KeyTag), Algorithm: 13, DigestType: 2, Digest: strings.ToLower(ds.Digest)}
	in := func(a Answer, cov ledger.Coverage, pds ...parent.DS) Input {
		return Input{State: st, Served: map[string][]Answer{"a.example": {a}}, Coverage: cov,
			Parent:     map[string]parent.Answer{"a.example": {Zone: "a.example", DS: pds}},
			PublicKeys: map[string][]byte{"01": ksk.raw, "02": zsk.raw}, Holders: map[string]int{"01": 1, "02": 1},
			Tokens: map[string]int{"R": 1}, TokensRead: true, Now: now}
	}
	set := func(keys ...testKey) []*dns.DNSKEY {
		var out []*dns.DNSKEY
		for _, k := range keys {
			out = append(out, k.rr)
		}
		return out
	}
	rrs := func(keys []*dns.DNSKEY) []dns.RR {
		var out []dns.RR
		for _, k := range keys {
			out = append(out, k)
		}
		return out
	}
	served := set(ksk, zsk)
	withStray := set(ksk, zsk, stray)
	for _, c := range []struct {
		name string
		in   Input
		want []string // substrings of the findings, in order; none: no finding
	}{
		{"as the signer serves it", in(Answer{Server: "s:53", DNSKEY: served, RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(served), now, 336*time.Hour)}}, covered, good), nil},
		{"a DNSKEY no HSM holds", in(Answer{Server: "s:53", DNSKEY: withStray, RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(withStray), now, 336*time.Hour)}}, covered, good),
			[]string{"server s:53 serves DNSKEY " + strconv.Itoa(int(stray.rr.KeyTag())) + "/13 (flags 257), which is no key the enforcer has"}},
		{"signatures the set does not match", in(Answer{Server: "s:53", DNSKEY: set(ksk), RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(served), now, 336*time.Hour)}}, covered, good),
			[]string{"verifies with no DNSKEY it serves", "serves no valid RRSIG"}},
		{"expiring before the refresh", in(Answer{Server: "s:53", DNSKEY: served, RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(served), now, 2*time.Hour)}}, covered, good),
			[]string{"within 72h0m0s: the signer has not renewed it"}},
		{"signed by a KSK no ceremony covers", in(Answer{Server: "s:53", DNSKEY: served, RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(served), now, 336*time.Hour)}}, ledger.Coverage{}, good),
			[]string{"which is not backed up: in no confirmed backup ceremony (rule 1, seen from outside)"}},
		{"a DS matching no served DNSKEY", in(Answer{Server: "s:53", DNSKEY: served, RRSIG: []*dns.RRSIG{sign(t, ksk, rrs(served), now, 336*time.Hour)}}, covered,
			parent.DS{KeyTag: 4242, Algorithm: 13, DigestType: 2, Digest: strings.Repeat("0", 64)}),
			[]string{"the parent has DS 4242/13 2 " + strings.Repeat("0", 64) + ", which matches no DNSKEY that server s:53 serves"}},
		{"no DNSKEY served", in(Answer{Server: "s:53"}, covered, good), []string{"server s:53 serves no DNSKEY"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Compare(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("%d findings, want %d: %+v", len(got), len(c.want), got)
			}
			for i, w := range c.want {
				if !strings.Contains(got[i].Text, w) {
					t.Errorf("finding %d: %q, want %q in it", i, got[i].Text, w)
				}
			}
		})
	}
}
