package zonereview

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// richZone has what a clean zone must pass with: a wildcard, empty
// non-terminals, a CNAME, names with escaped characters, a secure and two
// insecure delegations with glue (one below an empty non-terminal).
const richZone = `$TTL 3600
@            SOA   ns1 hostmaster 2026120701 7200 3600 1209600 300
@            NS    ns1
@            NS    ns2
@            MX    10 mail
ns1          A     192.0.2.1
ns1          AAAA  2001:db8::1
ns2          A     192.0.2.2
mail         A     192.0.2.3
www          CNAME ns1
*.wild       TXT   "wildcard"
a.b.c        A     192.0.2.4
weird\.dot   TXT   "escaped dot"
sp\032ace    TXT   "escaped space"
tab\009x\255 TXT   "escaped octets"
secure       NS    ns.secure
secure       DS    12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ns.secure    A     192.0.2.5
insecure     NS    ns.insecure
insecure     NS    ns.example.net.
ns.insecure  A     192.0.2.6
x.optent     NS    ns.example.net.
`

const origin = "example."

func review(t *testing.T, z *signedZone, opts Options) *Report {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = testNow
	}
	rep, err := Review(context.Background(), strings.NewReader(z.text()), z.origin, opts)
	if err != nil {
		t.Fatalf("review: %v", err)
	}
	return rep
}

func requireClean(t *testing.T, rep *Report) {
	t.Helper()
	if rep.FindingsTotal != 0 {
		for _, f := range rep.Findings {
			t.Errorf("finding: %s", f)
		}
		t.Fatalf("%d findings on a clean zone", rep.FindingsTotal)
	}
	if !rep.Passed() {
		t.Fatal("Passed() false without findings")
	}
	if rep.Verified != rep.Signatures || rep.Signatures == 0 {
		t.Fatalf("%d of %d signatures verified", rep.Verified, rep.Signatures)
	}
}

// requireFinding checks that rep has an Error finding with the code at
// owner and type (and key tag, when tag >= 0).
func requireFinding(t *testing.T, rep *Report, code Code, owner string, typ uint16, tag int) Finding {
	t.Helper()
	for _, f := range rep.Findings {
		if f.Code == code && strings.EqualFold(f.Owner, owner) && f.Type == typ && (tag < 0 || f.KeyTag == tag) {
			if f.Severity != Error {
				t.Fatalf("finding %s is a %s", f, f.Severity)
			}
			if rep.Passed() {
				t.Fatal("Passed() with an error finding")
			}
			if !strings.Contains(strings.ToLower(f.Reason), strings.ToLower(strings.TrimSuffix(owner, "."))) && !strings.Contains(f.Reason, fmt.Sprint(f.KeyTag)) {
				t.Errorf("reason %q names neither owner nor key", f.Reason)
			}
			return f
		}
	}
	for _, f := range rep.Findings {
		t.Logf("have: %s [%s key %d]", f, f.Code, f.KeyTag)
	}
	t.Fatalf("no %s finding at %s %s (key %d)", code, owner, typeString(typ), tag)
	return Finding{}
}

func TestCleanZones(t *testing.T) {
	for _, tc := range []struct {
		name   string
		alg    uint8
		nsec3  bool
		optOut bool
		iter   uint16
		salt   string
	}{
		{"ecdsa-p256-nsec", dns.ECDSAP256SHA256, false, false, 0, ""},
		{"ecdsa-p256-nsec3", dns.ECDSAP256SHA256, true, false, 0, ""},
		{"rsa2048-nsec", dns.RSASHA256, false, false, 0, ""},
		{"rsa2048-nsec3-salt", dns.RSASHA256, true, false, 5, "aabbccdd"},
		{"ed25519-nsec", dns.ED25519, false, false, 0, ""},
		{"ed25519-nsec3-optout", dns.ED25519, true, true, 0, ""},
		{"ecdsa-p384-nsec3-optout", dns.ECDSAP384SHA384, true, true, 1, "ff"},
		{"rsasha512-nsec", dns.RSASHA512, false, false, 0, ""},
		{"rsasha1-nsec", dns.RSASHA1, false, false, 0, ""},
		{"nsec3rsasha1-nsec3", dns.RSASHA1NSEC3SHA1, true, false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultOpts(t, origin, tc.alg)
			o.nsec3, o.optOut, o.iterations, o.salt = tc.nsec3, tc.optOut, tc.iter, tc.salt
			z := sign(t, origin, richZone, o)
			rep := review(t, z, Options{Margin: 7 * 24 * time.Hour})
			requireClean(t, rep)
			if rep.Serial != 2026120701 {
				t.Errorf("serial %d", rep.Serial)
			}
			if len(rep.Keys) != 2 || rep.DNSKEYTTL != 3600 {
				t.Errorf("keys %v ttl %d", rep.Keys, rep.DNSKEYTTL)
			}
			if want := o.expiration.Truncate(time.Second); !rep.EarliestExpiration.Equal(want) {
				t.Errorf("earliest expiration %s, want %s", rep.EarliestExpiration, want)
			}
			var kskUse, zskUse *KeyUse
			for i := range rep.Signers {
				switch rep.Signers[i].Tag {
				case o.ksk.tag():
					kskUse = &rep.Signers[i]
				case o.zsk.tag():
					zskUse = &rep.Signers[i]
				}
			}
			if kskUse == nil || !kskUse.SignedDNSKEY || kskUse.SignedOther || kskUse.Signatures != 1 {
				t.Errorf("KSK use %+v", kskUse)
			}
			if zskUse == nil || zskUse.SignedDNSKEY || !zskUse.SignedOther || zskUse.MaxTTL != 3600 {
				t.Errorf("ZSK use %+v", zskUse)
			}
			if tc.nsec3 != (rep.NSEC3 != nil) {
				t.Errorf("NSEC3PARAM %v", rep.NSEC3)
			}
		})
	}
}

// TestOutOfOrder: the review does not depend on the order of names, only
// on each RRset being in one place.
func TestOutOfOrder(t *testing.T) {
	for _, nsec3 := range []bool{false, true} {
		o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
		o.nsec3 = nsec3
		z := sign(t, origin, richZone, o)
		// Group by owner, shuffle the groups (the apex stays first).
		var groups [][]dns.RR
		for _, rr := range z.rrs {
			if n := len(groups); n > 0 && strings.EqualFold(groups[n-1][0].Header().Name, rr.Header().Name) {
				groups[n-1] = append(groups[n-1], rr)
				continue
			}
			groups = append(groups, []dns.RR{rr})
		}
		rnd := rand.New(rand.NewSource(1))
		rnd.Shuffle(len(groups)-1, func(i, j int) { groups[i+1], groups[j+1] = groups[j+1], groups[i+1] })
		z.rrs = nil
		for _, g := range groups {
			z.rrs = append(z.rrs, g...)
		}
		requireClean(t, review(t, z, Options{}))

		// The apex last: held until read.
		z.rrs = nil
		for _, g := range append(groups[1:], groups[0]) {
			z.rrs = append(z.rrs, g...)
		}
		requireClean(t, review(t, z, Options{}))

		// An RRset in two places is a finding.
		i := z.find(t, "ns1.example.", dns.TypeA, 0)
		a := z.rrs[i]
		z.remove(i)
		z.rrs = append(z.rrs, a)
		requireFinding(t, review(t, z, Options{}), CodeSplitRRset, "ns1.example.", dns.TypeA, -1)
	}
}

func TestFindings(t *testing.T) {
	base := func(t *testing.T, nsec3 bool) *signedZone {
		o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
		o.nsec3 = nsec3
		return sign(t, origin, richZone, o)
	}
	stray := newKey(t, "stray", origin, dns.ECDSAP256SHA256, false)
	for _, tc := range []struct {
		name  string
		nsec3 bool
		opts  Options
		// breaks the zone; returns the finding expected
		breakIt func(t *testing.T, z *signedZone) (Code, string, uint16, int)
	}{
		{"nsec3 signed by a key not in the DNSKEY RRset (.de, 2026-05-05)", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			owner := z.nsec3Owners()[2]
			z.resign(t, z.find(t, owner, dns.TypeRRSIG, dns.TypeNSEC3), stray, nil)
			return CodeUnknownKey, owner, dns.TypeNSEC3, int(stray.tag())
		}},
		{"nsec3 without signature", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			owner := z.nsec3Owners()[1]
			z.remove(z.find(t, owner, dns.TypeRRSIG, dns.TypeNSEC3))
			return CodeUnsigned, owner, dns.TypeNSEC3, -1
		}},
		{"expired signature", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.resign(t, z.find(t, "mail.example.", dns.TypeRRSIG, dns.TypeA), z.opts.zsk, func(s *dns.RRSIG) {
				s.Inception, s.Expiration = uint32(testNow.Add(-48*time.Hour).Unix()), uint32(testNow.Add(-time.Hour).Unix())
			})
			return CodeExpired, "mail.example.", dns.TypeA, int(z.opts.zsk.tag())
		}},
		{"signature expiring inside the margin", false, Options{Margin: 10 * 24 * time.Hour}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.resign(t, z.find(t, "www.example.", dns.TypeRRSIG, dns.TypeCNAME), z.opts.zsk, func(s *dns.RRSIG) {
				s.Expiration = uint32(testNow.Add(5 * 24 * time.Hour).Unix())
			})
			return CodeExpiresSoon, "www.example.", dns.TypeCNAME, int(z.opts.zsk.tag())
		}},
		{"signature not yet valid", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.resign(t, z.find(t, "example.", dns.TypeRRSIG, dns.TypeSOA), z.opts.zsk, func(s *dns.RRSIG) {
				s.Inception = uint32(testNow.Add(time.Hour).Unix())
			})
			return CodeNotYetValid, "example.", dns.TypeSOA, int(z.opts.zsk.tag())
		}},
		{"bad signature, one byte flipped", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			sig := z.rrs[z.find(t, `weird\.dot.example.`, dns.TypeRRSIG, dns.TypeTXT)].(*dns.RRSIG)
			raw := []byte(sig.Signature)
			raw[10] ^= 1 // a base64 character, so one bit of the signature
			if raw[10] == '+' || raw[10] == '/' {
				raw[10] = 'A'
			}
			sig.Signature = string(raw)
			return CodeBadSignature, `weird\.dot.example.`, dns.TypeTXT, int(z.opts.zsk.tag())
		}},
		{"bad signature over DS at a delegation", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			sig := z.rrs[z.find(t, "secure.example.", dns.TypeRRSIG, dns.TypeDS)].(*dns.RRSIG)
			sig.OrigTtl++
			return CodeBadSignature, "secure.example.", dns.TypeDS, int(z.opts.zsk.tag())
		}},
		{"unsigned DS at a delegation", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.remove(z.find(t, "secure.example.", dns.TypeRRSIG, dns.TypeDS))
			return CodeUnsigned, "secure.example.", dns.TypeDS, -1
		}},
		{"nsec chain: a record removed", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.remove(z.find(t, "mail.example.", dns.TypeRRSIG, dns.TypeNSEC))
			z.remove(z.find(t, "mail.example.", dns.TypeNSEC, 0))
			return CodeNSECChain, "mail.example.", dns.TypeNSEC, -1
		}},
		{"nsec chain: next name wrong", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			i := z.find(t, "ns1.example.", dns.TypeNSEC, 0)
			z.rrs[i].(*dns.NSEC).NextDomain = "www.example."
			z.resign(t, z.find(t, "ns1.example.", dns.TypeRRSIG, dns.TypeNSEC), z.opts.zsk, nil)
			return CodeNSECChain, "ns1.example.", dns.TypeNSEC, -1
		}},
		{"nsec3 chain: a record removed", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			owner := z.nsec3Owners()[3]
			prev := z.nsec3Owners()[2]
			z.remove(z.find(t, owner, dns.TypeRRSIG, dns.TypeNSEC3))
			z.remove(z.find(t, owner, dns.TypeNSEC3, 0))
			return CodeNSEC3Chain, prev, dns.TypeNSEC3, -1
		}},
		{"nsec3 chain: next hash wrong", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			owners := z.nsec3Owners()
			i := z.find(t, owners[0], dns.TypeNSEC3, 0)
			z.rrs[i].(*dns.NSEC3).NextDomain = strings.ToUpper(strings.SplitN(owners[2], ".", 2)[0])
			z.resign(t, z.find(t, owners[0], dns.TypeRRSIG, dns.TypeNSEC3), z.opts.zsk, nil)
			return CodeNSEC3Chain, owners[0], dns.TypeNSEC3, -1
		}},
		{"nsec3 parameters other than NSEC3PARAM", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			owner := z.nsec3Owners()[1]
			z.rrs[z.find(t, owner, dns.TypeNSEC3, 0)].(*dns.NSEC3).Iterations = 3
			z.resign(t, z.find(t, owner, dns.TypeRRSIG, dns.TypeNSEC3), z.opts.zsk, nil)
			return CodeNSEC3Params, owner, dns.TypeNSEC3, -1
		}},
		{"nsec type bitmap wrong", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			nsec := z.rrs[z.find(t, "ns1.example.", dns.TypeNSEC, 0)].(*dns.NSEC)
			nsec.TypeBitMap = []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC} // AAAA missing
			z.resign(t, z.find(t, "ns1.example.", dns.TypeRRSIG, dns.TypeNSEC), z.opts.zsk, nil)
			return CodeNSECBitmap, "ns1.example.", dns.TypeNSEC, -1
		}},
		{"nsec3 type bitmap wrong", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			h := strings.ToLower(dns.HashName("mail.example.", dns.SHA1, 0, "")) + ".example."
			x := z.rrs[z.find(t, h, dns.TypeNSEC3, 0)].(*dns.NSEC3)
			x.TypeBitMap = []uint16{dns.TypeA, dns.TypeMX, dns.TypeRRSIG}
			z.resign(t, z.find(t, h, dns.TypeRRSIG, dns.TypeNSEC3), z.opts.zsk, nil)
			return CodeNSEC3Bitmap, "mail.example.", dns.TypeNSEC3, -1
		}},
		{"DNSKEY RRset without signature", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.remove(z.find(t, "example.", dns.TypeRRSIG, dns.TypeDNSKEY))
			return CodeDNSKEYSigner, "example.", dns.TypeDNSKEY, -1
		}},
		{"DNSKEY not covered by the parent DS set", false, Options{ParentDS: []*dns.DS{}}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			return CodeParentDS, "example.", dns.TypeDNSKEY, -1
		}},
		{"parent DS of the ZSK only", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			return CodeParentDS, "example.", dns.TypeDNSKEY, -1
		}},
		{"unsupported algorithm", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			// An Ed448 key in the DNSKEY RRset, re-signed, and an
			// RRSIG by it over the SOA.
			ed448 := &dns.DNSKEY{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600}, Flags: 256, Protocol: 3, Algorithm: dns.ED448,
				PublicKey: "3kgROaDjrh0H2iuixWBrc8g2EpBBLCdGzHmn+G2MpTPhpj/OiBVHHSfPodx1FYYUcJKm1MDpJtIA"}
			z.insert(z.find(t, "example.", dns.TypeDNSKEY, 0), ed448)
			z.resign(t, z.find(t, "example.", dns.TypeRRSIG, dns.TypeDNSKEY), z.opts.ksk, nil)
			i := z.find(t, "example.", dns.TypeRRSIG, dns.TypeSOA)
			fake := *z.rrs[i].(*dns.RRSIG)
			fake.Algorithm, fake.KeyTag = dns.ED448, ed448.KeyTag()
			z.insert(i, &fake)
			return CodeUnsupported, "example.", dns.TypeSOA, int(ed448.KeyTag())
		}},
		{"apex without NS", false, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			for {
				i := -1
				for j, rr := range z.rrs {
					if rr.Header().Name == "example." && (rr.Header().Rrtype == dns.TypeNS || (rr.Header().Rrtype == dns.TypeRRSIG && rr.(*dns.RRSIG).TypeCovered == dns.TypeNS)) {
						i = j
					}
				}
				if i < 0 {
					break
				}
				z.remove(i)
			}
			return CodeApex, "example.", dns.TypeNS, -1
		}},
		{"an RRset without RRSIG", true, Options{}, func(t *testing.T, z *signedZone) (Code, string, uint16, int) {
			z.remove(z.find(t, "ns1.example.", dns.TypeRRSIG, dns.TypeAAAA))
			return CodeUnsigned, "ns1.example.", dns.TypeAAAA, -1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := base(t, tc.nsec3)
			code, owner, typ, tag := tc.breakIt(t, z)
			opts := tc.opts
			if tc.name == "parent DS of the ZSK only" {
				opts.ParentDS = []*dns.DS{z.opts.zsk.dnskey.ToDS(dns.SHA256)}
			}
			rep := review(t, z, opts)
			f := requireFinding(t, rep, code, owner, typ, tag)
			t.Logf("%s", f)
		})
	}
}

func TestParentDS(t *testing.T) {
	o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
	z := sign(t, origin, richZone, o)
	for _, d := range []uint8{dns.SHA1, dns.SHA256, dns.SHA384} {
		ds := o.ksk.dnskey.ToDS(d)
		other := newKey(t, "other-ksk", origin, dns.ECDSAP256SHA256, true).dnskey.ToDS(dns.SHA256)
		requireClean(t, review(t, z, Options{ParentDS: []*dns.DS{other, ds}}))
	}
}

// TestUnknownKeyBesideGood: an extra RRSIG by a key not in the DNSKEY
// RRset is an error even when a good signature is beside it.
func TestUnknownKeyBesideGood(t *testing.T) {
	o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
	o.nsec3 = true
	z := sign(t, origin, richZone, o)
	stray := newKey(t, "stray", origin, dns.ECDSAP256SHA256, false)
	owner := z.nsec3Owners()[0]
	i := z.find(t, owner, dns.TypeRRSIG, dns.TypeNSEC3)
	extra := *z.rrs[i].(*dns.RRSIG)
	z.insert(i, &extra)
	z.resign(t, i+1, stray, nil)
	rep := review(t, z, Options{})
	f := requireFinding(t, rep, CodeUnknownKey, owner, dns.TypeNSEC3, int(stray.tag()))
	if !strings.Contains(f.Reason, fmt.Sprintf("signed by key %d, not in the DNSKEY RRset", stray.tag())) {
		t.Errorf("reason %q", f.Reason)
	}
	var u *KeyUse
	for i := range rep.Signers {
		if rep.Signers[i].Tag == stray.tag() {
			u = &rep.Signers[i]
		}
	}
	if u == nil || u.InDNSKEY || u.Signatures != 1 || u.Verified != 0 {
		t.Errorf("stray key use %+v", u)
	}
}

// TestExpiredBesideGood: an expired signature beside a valid one is a
// warning, not an error.
func TestExpiredBesideGood(t *testing.T) {
	o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
	z := sign(t, origin, richZone, o)
	i := z.find(t, "mail.example.", dns.TypeRRSIG, dns.TypeA)
	extra := *z.rrs[i].(*dns.RRSIG)
	z.insert(i, &extra)
	z.resign(t, i+1, o.zsk, func(s *dns.RRSIG) { s.Expiration = uint32(testNow.Add(-time.Hour).Unix()) })
	rep := review(t, z, Options{})
	if !rep.Passed() || rep.FindingsTotal != 1 || rep.Findings[0].Code != CodeExpired || rep.Findings[0].Severity != Warning {
		t.Fatalf("findings %v", rep.Findings)
	}
}

func TestFindingsCapAndOrder(t *testing.T) {
	o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
	var b strings.Builder
	b.WriteString("$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&b, "n%03d A 192.0.2.1\n", i)
	}
	o.expiration = testNow.Add(-time.Minute)
	o.inception = testNow.Add(-time.Hour)
	z := sign(t, origin, b.String(), o)
	// The last records first, so the cap must pick by zone order.
	cut := 20
	for z.rrs[cut].Header().Name == z.rrs[cut-1].Header().Name {
		cut++
	}
	head := append([]dns.RR(nil), z.rrs[:cut]...)
	z.rrs = append(z.rrs[cut:], head...)
	rep := review(t, z, Options{MaxFindings: 10})
	if len(rep.Findings) != 10 || rep.FindingsTotal <= 600 || rep.Errors != rep.FindingsTotal {
		t.Fatalf("kept %d of %d (%d errors)", len(rep.Findings), rep.FindingsTotal, rep.Errors)
	}
	if rep.Findings[0].Owner != "example." {
		t.Errorf("first finding at %s", rep.Findings[0].Owner)
	}
	for i := 1; i < len(rep.Findings); i++ {
		a, _ := wireName(rep.Findings[i-1].Owner)
		b, _ := wireName(rep.Findings[i].Owner)
		if compareNames(a, b) > 0 {
			t.Errorf("finding %d (%s) before %s", i, rep.Findings[i-1].Owner, rep.Findings[i].Owner)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"parse error names the line", "$TTL 300\nexample. SOA ns1 h 1 2 3 4 5\nexample. NS ns1.example.\nfoo.example. A 300.1.1.1\n", "line: 4"},
		{"include refused", "$INCLUDE /etc/passwd\n", "include"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Review(context.Background(), strings.NewReader(tc.text), origin, Options{Now: testNow})
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	z := sign(t, origin, richZone, defaultOpts(t, origin, dns.ECDSAP256SHA256))
	if _, err := Review(ctx, strings.NewReader(z.text()), origin, Options{Now: testNow}); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

func TestOutOfZone(t *testing.T) {
	z := sign(t, origin, richZone, defaultOpts(t, origin, dns.ECDSAP256SHA256))
	z.rrs = append(z.rrs, &dns.A{Hdr: dns.RR_Header{Name: "other.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 9}})
	requireFinding(t, review(t, z, Options{}), CodeOutOfZone, "other.org.", dns.TypeA, -1)
}

func TestNames(t *testing.T) {
	w := func(s string) string { return mustWire(t, s) }
	order := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", "\\001.z.example.", "*.z.example.", "\\200.z.example."}
	for i := 1; i < len(order); i++ {
		if compareNames(w(order[i-1]), w(order[i])) >= 0 {
			t.Errorf("%s not before %s", order[i-1], order[i])
		}
	}
	if !isBelow(w("a.b.example."), w("b.example.")) || isBelow(w("ab.example."), w("b.example.")) || !isBelow(w("example."), w("example.")) {
		t.Error("isBelow")
	}
	if labelCount(w("*.a.example.")) != 3 || parentName(w("a.example.")) != w("example.") {
		t.Error("labels")
	}
	var s typeSet
	for _, typ := range []uint16{1, 46, 65, 257, 32769} {
		s.add(typ)
	}
	if got := fmt.Sprint(s.list()); got != "[1 46 65 257 32769]" || !s.has(257) || s.has(2) {
		t.Errorf("typeSet %s", got)
	}
	if !s.equal(typesOf([]uint16{32769, 257, 65, 46, 1})) {
		t.Error("typeSet equal")
	}
}
