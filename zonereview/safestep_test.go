package zonereview

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// use describes what a key signed in a version, for building reports.
type keyRole struct {
	key          testKey
	signsDNSKEY  bool
	signsOther   bool
	maxTTL       uint32
	notInDNSKEYs bool // signs, but is not in the DNSKEY RRset
}

func version(roles ...keyRole) *Report {
	r := &Report{Origin: origin, DNSKEYTTL: 3600, MaxTTL: 86400}
	for _, k := range roles {
		d := k.key.dnskey
		if !k.notInDNSKEYs {
			r.Keys = append(r.Keys, Key{Tag: d.KeyTag(), Algorithm: d.Algorithm, Flags: d.Flags, SEP: d.Flags&dns.SEP != 0, Supported: true, DNSKEY: d})
		}
		if k.signsDNSKEY || k.signsOther {
			ttl := k.maxTTL
			if ttl == 0 {
				ttl = 3600
			}
			r.Signers = append(r.Signers, KeyUse{Tag: d.KeyTag(), Algorithm: d.Algorithm, InDNSKEY: !k.notInDNSKEYs, Signatures: 1, Verified: 1,
				SignedDNSKEY: k.signsDNSKEY, SignedOther: k.signsOther, MaxTTL: ttl})
		}
	}
	return r
}

func TestSafeStep(t *testing.T) {
	ksk1 := newKey(t, "ksk", origin, dns.ECDSAP256SHA256, true)
	ksk2 := newKey(t, "ksk2", origin, dns.ECDSAP256SHA256, true)
	zsk1 := newKey(t, "zsk", origin, dns.ECDSAP256SHA256, false)
	zsk2 := newKey(t, "zsk2", origin, dns.ECDSAP256SHA256, false)
	rsaZSK := newKey(t, "zsk"+algString(dns.RSASHA256), origin, dns.RSASHA256, false)
	rsaKSK := newKey(t, "ksk"+algString(dns.RSASHA256), origin, dns.RSASHA256, true)
	now := testNow
	K := func(k testKey) keyRole { return keyRole{key: k, signsDNSKEY: true} }
	Z := func(k testKey) keyRole { return keyRole{key: k, signsOther: true} }
	P := func(k testKey) keyRole { return keyRole{key: k} } // published, signs nothing
	type want struct {
		code Code
		tag  uint16
	}
	for _, tc := range []struct {
		name         string
		served, next *Report
		proof        Proof
		want         []want
	}{
		{"no change", version(K(ksk1), Z(zsk1)), version(K(ksk1), Z(zsk1)), Proof{}, nil},
		{"ZSK rollover: the new ZSK published", version(K(ksk1), Z(zsk1)), version(K(ksk1), Z(zsk1), P(zsk2)), Proof{}, nil},
		{"ZSK rollover: the new ZSK signs once published for the DNSKEY TTL",
			version(K(ksk1), Z(zsk1), P(zsk2)), version(K(ksk1), P(zsk1), Z(zsk2)), Proof{ServedSince: now.Add(-2 * time.Hour)}, nil},
		{"ZSK rollover: the new ZSK signs too early",
			version(K(ksk1), Z(zsk1), P(zsk2)), version(K(ksk1), P(zsk1), Z(zsk2)), Proof{ServedSince: now.Add(-10 * time.Minute)},
			[]want{{CodeKeyNotInServed, zsk2.tag()}}},
		{"ZSK rollover: published long before the served version, by the records",
			version(K(ksk1), Z(zsk1), P(zsk2)), version(K(ksk1), P(zsk1), Z(zsk2)),
			Proof{ServedSince: now.Add(-10 * time.Minute), PublishedSince: map[uint16]time.Time{zsk2.tag(): now.Add(-24 * time.Hour)}}, nil},
		{"ZSK rollover: when the new ZSK was published is unknown",
			version(K(ksk1), Z(zsk1), P(zsk2)), version(K(ksk1), P(zsk1), Z(zsk2)), Proof{}, []want{{CodeKeyNotInServed, zsk2.tag()}}},
		{"a key signs without being published",
			version(K(ksk1), Z(zsk1)), version(K(ksk1), Z(zsk2)), Proof{ServedSince: now.Add(-48 * time.Hour)},
			[]want{{CodeKeyRemoved, zsk1.tag()}, {CodeKeyNotInServed, zsk2.tag()}}},
		{"ZSK rollover: the old ZSK removed while its signatures are served",
			version(K(ksk1), Z(zsk1), Z(zsk2)), version(K(ksk1), Z(zsk2)), Proof{ServedSince: now.Add(-48 * time.Hour)},
			[]want{{CodeKeyRemoved, zsk1.tag()}}},
		{"ZSK rollover: the old ZSK removed after the largest TTL",
			version(K(ksk1), P(zsk1), Z(zsk2)), version(K(ksk1), Z(zsk2)), Proof{ServedSince: now.Add(-25 * time.Hour)}, nil},
		{"ZSK rollover: the old ZSK removed before the largest TTL",
			version(K(ksk1), P(zsk1), Z(zsk2)), version(K(ksk1), Z(zsk2)), Proof{ServedSince: now.Add(-time.Hour)},
			[]want{{CodeKeyRemoved, zsk1.tag()}}},
		{"ZSK rollover: the records say the old ZSK stopped signing long ago",
			version(K(ksk1), P(zsk1), Z(zsk2)), version(K(ksk1), Z(zsk2)),
			Proof{ServedSince: now.Add(-time.Hour), LastSigned: map[uint16]time.Time{zsk1.tag(): now.Add(-72 * time.Hour)}}, nil},
		{"a dropped key, nothing known",
			version(K(ksk1), P(zsk1), Z(zsk2)), version(K(ksk1), Z(zsk2)), Proof{}, []want{{CodeKeyRemoved, zsk1.tag()}}},
		{"KSK rollover: new KSK signs the DNSKEY RRset alone, DS not settled",
			version(K(ksk1), P(ksk2), Z(zsk1)), version(P(ksk1), K(ksk2), Z(zsk1)), Proof{ServedSince: now.Add(-48 * time.Hour)},
			[]want{{CodeDNSKEYChain, ksk2.tag()}}},
		{"KSK rollover: new KSK signs alone, DS settled",
			version(K(ksk1), P(ksk2), Z(zsk1)), version(P(ksk1), K(ksk2), Z(zsk1)), Proof{ServedSince: now.Add(-48 * time.Hour), DSSettled: true}, nil},
		{"KSK rollover: both KSKs sign the DNSKEY RRset",
			version(K(ksk1), P(ksk2), Z(zsk1)), version(K(ksk1), K(ksk2), Z(zsk1)), Proof{}, nil},
		{"KSK rollover: the old KSK, which only signed the DNSKEY RRset, is dropped",
			version(K(ksk1), K(ksk2), Z(zsk1)), version(K(ksk2), Z(zsk1)), Proof{}, nil},
		{"algorithm rollover: new algorithm signs before it is published",
			version(K(ksk1), Z(zsk1)), version(K(ksk1), Z(zsk1), K(rsaKSK), Z(rsaZSK)), Proof{ServedSince: now.Add(-48 * time.Hour)},
			[]want{{CodeKeyNotInServed, rsaZSK.tag()}}},
		{"algorithm rollover: new algorithm published and signing, then the old removed too early",
			version(K(ksk1), Z(zsk1), K(rsaKSK), Z(rsaZSK)), version(K(rsaKSK), Z(rsaZSK)), Proof{ServedSince: now.Add(-48 * time.Hour)},
			[]want{{CodeKeyRemoved, zsk1.tag()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SafeStep(tc.served, tc.next, now, tc.proof)
			if len(got) != len(tc.want) {
				for _, f := range got {
					t.Logf("got %s [%s %d]", f, f.Code, f.KeyTag)
				}
				t.Fatalf("%d findings, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				f := got[i]
				if f.Code != w.code || f.KeyTag != int(w.tag) || f.Severity != Error || f.Owner != origin || f.Type != dns.TypeDNSKEY {
					t.Errorf("finding %d: %s [%s %d], want %s key %d", i, f, f.Code, f.KeyTag, w.code, w.tag)
				}
			}
		})
	}
}

// TestSafeStepOnReviews runs SafeStep on reports Review made.
func TestSafeStepOnReviews(t *testing.T) {
	o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
	served := review(t, sign(t, origin, richZone, o), Options{})
	o2 := o
	o2.zsk = newKey(t, "zsk2", origin, dns.ECDSAP256SHA256, false)
	next := review(t, sign(t, origin, richZone, o2), Options{})
	got := SafeStep(served, next, testNow, Proof{ServedSince: testNow.Add(-48 * time.Hour)})
	if len(got) != 2 || got[0].Code != CodeKeyRemoved || got[1].Code != CodeKeyNotInServed {
		t.Fatalf("findings %v", got)
	}
	if got := SafeStep(served, served, testNow, Proof{}); len(got) != 0 {
		t.Fatalf("findings on the same version: %v", got)
	}
}
