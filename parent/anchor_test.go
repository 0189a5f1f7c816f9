package parent

import (
	"context"
	"crypto"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A parent zone signed in memory: its key, the DNSKEY RRset signed by it,
// and helpers that sign whatever the tests serve.
type signedZone struct {
	t    *testing.T
	zone string
	key  *dns.DNSKEY
	priv crypto.Signer
	now  time.Time
}

func newSignedZone(t *testing.T, zone string) *signedZone {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	return &signedZone{t: t, zone: zone, key: k, priv: priv.(crypto.Signer), now: time.Now()}
}

// sign returns the RRSIG over rrset by z's key, valid from an hour ago for
// valid (negative: expired).
func (z *signedZone) sign(rrset []dns.RR, valid time.Duration) *dns.RRSIG {
	z.t.Helper()
	h := rrset[0].Header()
	inception := z.now.Add(-time.Hour)
	if valid < 0 {
		inception = z.now.Add(valid - 14*24*time.Hour)
	}
	s := &dns.RRSIG{Hdr: dns.RR_Header{Name: h.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: h.Ttl},
		Algorithm: z.key.Algorithm, KeyTag: z.key.KeyTag(), SignerName: z.zone,
		Inception: uint32(inception.Unix()), Expiration: uint32(z.now.Add(valid).Unix())}
	if err := s.Sign(z.priv, rrset); err != nil {
		z.t.Fatal(err)
	}
	return s
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ask answers the DNSKEY question with the zone's DNSKEY RRset, signed by
// signer (z itself, or another key).
func (z *signedZone) ask(signer *signedZone) asker {
	return func(_ context.Context, name string, qtype uint16) (*dns.Msg, error) {
		if qtype != dns.TypeDNSKEY || name != z.zone {
			return nil, fmt.Errorf("unexpected question %s %d", name, qtype)
		}
		m := new(dns.Msg)
		set := []dns.RR{z.key}
		m.Answer = append(set, signer.sign(set, 14*24*time.Hour))
		return m, nil
	}
}

func (z *signedZone) anchor(t *testing.T) *Anchor {
	a, err := ParseAnchor(z.key.String())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestValidateDS(t *testing.T) {
	z := newSignedZone(t, "example.")
	other := newSignedZone(t, "example.")
	ds := []dns.RR{rr(t, "a.example. 60 IN DS 12345 13 2 "+strings.Repeat("ab", 32))}
	nsec := []dns.RR{rr(t, "a.example. 60 IN NSEC ns1.example. NS RRSIG NSEC")}
	nsecDS := []dns.RR{rr(t, "a.example. 60 IN NSEC ns1.example. NS DS RRSIG NSEC")}
	cover := []dns.RR{rr(t, "example. 60 IN NSEC ns1.example. NS SOA RRSIG NSEC DNSKEY")}
	delegation := []dns.RR{rr(t, "a.example. 60 IN NSEC ns1.example. NS RRSIG NSEC")}
	msg := func(answer, ns []dns.RR) *dns.Msg {
		m := new(dns.Msg)
		m.Answer, m.Ns = answer, ns
		return m
	}
	with := func(set []dns.RR, sig *dns.RRSIG) []dns.RR { return append(append([]dns.RR(nil), set...), sig) }
	week := 7 * 24 * time.Hour
	for _, tt := range []struct {
		name  string
		child string
		ask   asker
		r     *dns.Msg
		want  string // "" for valid, else a part of the error
	}{
		{"a signed DS RRset", "a.example.", z.ask(z), msg(with(ds, z.sign(ds, week)), nil), ""},
		{"a DS RRset signed by another key", "a.example.", z.ask(z), msg(with(ds, other.sign(ds, week)), nil), "not signed"},
		{"a DS RRset without signature (spoofed)", "a.example.", z.ask(z), msg(ds, nil), "not signed"},
		{"a DS RRset whose signature expired", "a.example.", z.ask(z), msg(with(ds, z.sign(ds, -time.Hour)), nil), "not signed"},
		{"the parent's DNSKEY RRset not signed by the anchor", "a.example.", z.ask(other), msg(with(ds, z.sign(ds, week)), nil), "trust anchor"},
		{"no DS: the delegation's signed NSEC", "a.example.", z.ask(z), msg(nil, with(nsec, z.sign(nsec, week))), ""},
		{"no DS and no proof (stripped)", "a.example.", z.ask(z), msg(nil, nil), "without a signed NSEC"},
		{"no DS, an NSEC not signed", "a.example.", z.ask(z), msg(nil, nsec), "without a signed NSEC"},
		{"no DS, an NSEC that lists DS", "a.example.", z.ask(z), msg(nil, with(nsecDS, z.sign(nsecDS, week))), "without a signed NSEC"},
		{"no such name: a covering NSEC", "b.example.", z.ask(z), msg(nil, with(cover, z.sign(cover, week))), ""},
		{"a name below a delegation: its NSEC proves nothing", "x.a.example.", z.ask(z), msg(nil, with(delegation, z.sign(delegation, week))), "without a signed NSEC"},
		{"a zone not below the anchor", "a.example.org.", z.ask(z), msg(nil, nil), "not below the trust anchor"},
		{"the anchor is the zone's own key", "example.", z.ask(z), msg(nil, nil), "a key of example. itself"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := z.anchor(t)
			err := a.Validate(context.Background(), "s", tt.ask, tt.child, tt.r, z.now)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("want an error with %q, got %v", tt.want, err)
			}
		})
	}
}

// An anchor given as the DS of the parent's key, or in BIND's syntax,
// validates the same; one of another key does not.
func TestAnchorForms(t *testing.T) {
	z := newSignedZone(t, "example.")
	ds := []dns.RR{rr(t, "a.example. 60 IN DS 12345 13 2 "+strings.Repeat("ab", 32))}
	m := new(dns.Msg)
	m.Answer = append(ds, z.sign(ds, time.Hour))
	bind := fmt.Sprintf("trust-anchors {\n\t\"example.\" static-key %d %d %d \"%s\";\n};\n", z.key.Flags, z.key.Protocol, z.key.Algorithm, z.key.PublicKey)
	d := z.key.ToDS(dns.SHA256)
	bindDS := fmt.Sprintf("trust-anchors { example. static-ds %d %d %d \"%s\"; };", d.KeyTag, d.Algorithm, d.DigestType, d.Digest)
	for _, text := range []string{z.key.ToDS(dns.SHA256).String(), bind, bindDS} {
		a, err := ParseAnchor(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		if err := a.Validate(context.Background(), "s", z.ask(z), "a.example.", m, z.now); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
	}
	other := newSignedZone(t, "example.")
	a, err := ParseAnchor(other.key.ToDS(dns.SHA256).String())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(context.Background(), "s", z.ask(z), "a.example.", m, z.now); err == nil {
		t.Fatal("validated from another key's DS")
	}
}

func TestParseAnchorErrors(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"", "no DNSKEY or DS"},
		{"example. IN DNSKEY 257 3 13 AAAA\nexample.org. IN DNSKEY 257 3 13 AAAA", "two zones"},
		{"example. IN DNSKEY 1 3 13 AAAA", "not a zone key"},
		{"example. IN A 192.0.2.1", "want DNSKEY or DS"},
		{"this is not a zone file", "not DNSKEY or DS records"},
	} {
		if _, err := ParseAnchor(tt.text); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: want an error with %q, got %v", tt.text, tt.want, err)
		}
	}
}

// NSEC3: a matching record without DS; an opt-out span covering the next
// closer name below a matched closest encloser (the apex); a matching
// record that lists DS does not prove its absence.
func TestValidateNSEC3(t *testing.T) {
	z := newSignedZone(t, "example.")
	hash := func(n string) string { return strings.ToLower(dns.HashName(n, dns.SHA1, 0, "")) }
	apex := hash("example.")
	child := hash("a.example.")
	nsec3 := func(owner, next string, optOut bool, types string) dns.RR {
		flags := 0
		if optOut {
			flags = 1
		}
		return rr(t, fmt.Sprintf("%s.example. 60 IN NSEC3 1 %d 0 - %s %s", owner, flags, strings.ToUpper(next), types))
	}
	// A hash just after and just before the child's, for a covering span.
	before, after := "00000000000000000000000000000000", "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
	sign := func(rrs ...dns.RR) []dns.RR {
		var out []dns.RR
		for _, r := range rrs {
			out = append(out, r, z.sign([]dns.RR{r}, time.Hour))
		}
		return out
	}
	for _, tt := range []struct {
		name string
		ns   []dns.RR
		ok   bool
	}{
		{"matching, no DS", sign(nsec3(child, after, false, "NS")), true},
		{"matching, with DS", sign(nsec3(child, after, false, "NS DS RRSIG")), false},
		{"opt-out span, apex matched", sign(nsec3(apex, after, false, "NS SOA RRSIG DNSKEY NSEC3PARAM"), nsec3(before, after, true, "")), child != apex},
		{"a covering span only, no closest encloser", sign(nsec3(before, after, true, "")), false},
	} {
		m := new(dns.Msg)
		m.Ns = tt.ns
		err := z.anchor(t).Validate(context.Background(), "s", z.ask(z), "a.example.", m, z.now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: valid %v, want %v (%v)", tt.name, err == nil, tt.ok, err)
		}
	}
}

func TestCanonicalOrder(t *testing.T) {
	// RFC 4034 6.1's example, in order.
	names := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", `\001.z.example.`, "*.z.example.", `\200.z.example.`}
	for i := 0; i+1 < len(names); i++ {
		if !canonicalLess(names[i], names[i+1]) || canonicalLess(names[i+1], names[i]) {
			t.Errorf("%s < %s: not so ordered", names[i], names[i+1])
		}
	}
}
