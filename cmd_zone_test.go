package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// The served zones: what ods-signerd would publish, made here with the
// enforcer's keys on the SoftHSM token (signatures made through PKCS#11),
// served by a BIND 9 of their own.

// zoneSlot holds a script's zone server.
type zoneSlot struct {
	p     *sandbox.Parent
	zones []string
	gate  bool // served from what the publish gate installs, reloaded by rndc
}

// childzone [-token LABEL] [-extra] [-validity DUR] [-tamper] ZONE: write
// $WORK/zones/ZONE.zone: SOA, NS, the DNSKEY of every key of ZONE whose
// DNSKEY the enforcer publishes (rumoured or omnipresent; public keys read
// from the token), and an RRSIG over that DNSKEY RRset by each such KSK or
// CSK, signed on the token. -extra adds a KSK that no HSM holds (made in
// memory), which signs too; -validity: the signatures expire DUR from now
// (default 336h); -tamper: a DNSKEY RRset that the signatures do not match
// (the ZSKs' DNSKEYs left out after signing).
func cmdChildZone(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("childzone", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	label := fs.String("token", "ods-a", "token label")
	extra := fs.Bool("extra", false, "a KSK no HSM holds")
	validity := fs.Duration("validity", 336*time.Hour, "signature validity")
	tamper := fs.Bool("tamper", false, "signatures that do not match")
	if neg || fs.Parse(args) != nil || fs.NArg() != 1 {
		ts.Fatalf("usage: childzone [-token LABEL] [-extra] [-validity DUR] [-tamper] ZONE")
	}
	zone := strings.TrimSuffix(fs.Arg(0), ".")
	// One column a query (queryDB reads the first): the same rows, in the
	// same order, in SQLite and MySQL.
	col := func(c string) []string {
		got, err := queryDB(ts, `SELECT `+c+` FROM keyData k JOIN zone z ON z.id = k.zoneId
			JOIN hsmKey h ON h.id = k.hsmKeyId JOIN keyState s ON s.keyDataId = k.id
			WHERE z.name = '`+zone+`' AND s.type = 2 AND s.state IN (1, 2) ORDER BY k.id`)
		ts.Check(err)
		if got == "" {
			ts.Fatalf("childzone: the enforcer publishes no DNSKEY of %s yet", zone)
		}
		return strings.Split(got, ",")
	}
	locs, roles := col("h.locator"), col("k.role")
	conf := ts.Getenv("SOFTHSM2_CONF")
	work := ts.MkAbs("zones")
	ts.Check(os.MkdirAll(work, 0o755))
	type key struct {
		rr     *dns.DNSKEY
		signer crypto.Signer
	}
	var keys []key
	for i, loc := range locs {
		role := roles[i]
		der := filepath.Join(work, loc+".pub")
		ts.Check(sandbox.PKCS11Tool(conf, *label, sandbox.PIN, "--read-object", "--type", "pubkey", "--id", loc, "-o", der))
		b, err := os.ReadFile(der)
		ts.Check(err)
		pk, err := x509.ParsePKIXPublicKey(b)
		ts.Check(err)
		ec, ok := pk.(*ecdsa.PublicKey)
		if !ok {
			ts.Fatalf("childzone: key %s is no ECDSA key", loc)
		}
		flags := uint16(256)
		if role == "1" || role == "3" {
			flags = 257
		}
		rr := dnskey(zone, flags, ec)
		var s crypto.Signer
		if flags == 257 {
			s = &tokenSigner{conf: conf, label: *label, id: loc, pub: ec, dir: work}
		}
		keys = append(keys, key{rr, s})
	}
	if *extra {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ts.Check(err)
		keys = append(keys, key{dnskey(zone, 257, &priv.PublicKey), priv})
	}
	var rrset []dns.RR
	for _, k := range keys {
		rrset = append(rrset, k.rr)
	}
	now := time.Now().UTC()
	var sigs []dns.RR
	for _, k := range keys {
		if k.signer == nil {
			continue
		}
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 60},
			Algorithm: dns.ECDSAP256SHA256, KeyTag: k.rr.KeyTag(), SignerName: dns.Fqdn(zone),
			Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(*validity).Unix())}
		ts.Check(sig.Sign(k.signer, rrset))
		sigs = append(sigs, sig)
	}
	// The apex NSEC, signed by the first signing key: BIND serves a zone's
	// RRSIGs only when it sees it signed (a DNSKEY and a signed NSEC).
	nsec := &dns.NSEC{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 60},
		NextDomain: "ns1." + dns.Fqdn(zone), TypeBitMap: []uint16{dns.TypeNS, dns.TypeSOA, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY}}
	for _, k := range keys {
		if k.signer == nil {
			continue
		}
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 60},
			Algorithm: dns.ECDSAP256SHA256, KeyTag: k.rr.KeyTag(), SignerName: dns.Fqdn(zone),
			Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(336 * time.Hour).Unix())}
		ts.Check(sig.Sign(k.signer, []dns.RR{nsec}))
		sigs = append(sigs, nsec, sig)
		break
	}
	if *tamper {
		var kept []dns.RR
		for _, rr := range rrset {
			if rr.(*dns.DNSKEY).Flags == 257 {
				kept = append(kept, rr)
			}
		}
		rrset = kept
	}
	var z strings.Builder
	fmt.Fprintf(&z, "$ORIGIN %s.\n$TTL 60\n@ SOA ns1 hostmaster %d 60 60 600 60\n@ NS ns1\nns1 A 127.0.0.1\n", zone, now.Unix())
	fmt.Fprintf(&z, "ns1 NSEC @ A RRSIG NSEC\n")
	for _, rr := range append(rrset, sigs...) {
		fmt.Fprintln(&z, rr.String())
	}
	ts.Check(os.WriteFile(filepath.Join(work, zone+".zone"), []byte(z.String()), 0o644))
}

func dnskey(zone string, flags uint16, pub *ecdsa.PublicKey) *dns.DNSKEY {
	raw := append(pub.X.FillBytes(make([]byte, 32)), pub.Y.FillBytes(make([]byte, 32))...)
	return &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 60},
		Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256, PublicKey: base64.StdEncoding.EncodeToString(raw)}
}

// tokenSigner signs on the SoftHSM token with pkcs11-tool (CKM_ECDSA over
// the digest), as the signer would through libhsm.
type tokenSigner struct {
	conf, label, id, dir string
	pub                  *ecdsa.PublicKey
}

func (t *tokenSigner) Public() crypto.PublicKey { return t.pub }

func (t *tokenSigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	in, out := filepath.Join(t.dir, t.id+".in"), filepath.Join(t.dir, t.id+".sig")
	if err := os.WriteFile(in, digest, 0o600); err != nil {
		return nil, err
	}
	if err := sandbox.PKCS11Tool(t.conf, t.label, sandbox.PIN, "--sign", "--mechanism", "ECDSA", "--id", t.id, "-i", in, "-o", out); err != nil {
		return nil, err
	}
	rs, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if len(rs) != 64 {
		return nil, fmt.Errorf("pkcs11-tool --sign: %d bytes, want r||s of 64", len(rs))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
}

// zoneserver start ZONE...: serve $WORK/zones/ZONE.zone (childzone writes
// them) from a BIND 9 of their own; sets $ZONESERVER (ADDR:PORT).
// zoneserver start -gate ZONE...: the same with an rndc control channel
// ($ZONESERVER_RNDC is its rndc.conf) and no file needed yet: the publish
// gate installs the files and reloads them.
// zoneserver restart: serve the files as they are now, on the same port.
func cmdZoneServer(ts *testscript.TestScript, neg bool, args []string) {
	slot := ts.Value("zoneserver").(*zoneSlot)
	if neg || len(args) < 1 {
		ts.Fatalf("usage: zoneserver start [-gate] ZONE... | zoneserver restart")
	}
	port := 0
	switch {
	case args[0] == "start" && len(args) > 2 && args[1] == "-gate":
		slot.zones, slot.gate = args[2:], true
	case args[0] == "start" && len(args) > 1:
		slot.zones = args[1:]
	case args[0] == "restart" && slot.p != nil:
		port = slot.p.Port
		slot.p.Stop()
		for _, z := range slot.zones {
			os.Remove(ts.MkAbs(filepath.Join("zones", z+".zone.jnl")))
		}
	default:
		ts.Fatalf("usage: zoneserver start ZONE... | zoneserver restart")
	}
	files := map[string]string{}
	for _, z := range slot.zones {
		files[z] = ts.MkAbs(filepath.Join("zones", z+".zone"))
	}
	var p *sandbox.Parent
	var err error
	if slot.gate {
		ts.Check(os.MkdirAll(ts.MkAbs("zones"), 0o755))
		p, err = sandbox.StartZonesControlled(ts.MkAbs("zoneserver"), port, files)
	} else {
		p, err = sandbox.StartZones(ts.MkAbs("zoneserver"), port, files, false)
	}
	ts.Check(err)
	ts.Defer(p.Stop)
	slot.p = p
	ts.Setenv("ZONESERVER", p.Addr())
	ts.Setenv("ZONESERVER_PORT", strconv.Itoa(p.Port))
	ts.Setenv("ZONESERVER_RNDC", p.Rndc)
}
