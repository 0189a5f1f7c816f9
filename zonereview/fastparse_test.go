package zonereview

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/miekg/dns"
)

// The fast parser must give exactly what ZoneParser gives: the same
// records, field for field, and an error where ZoneParser has one.

type parsed struct {
	rrs []dns.RR
	err error
}

func parseBoth(text string, oneByte bool) (fast, slow parsed) {
	var r io.Reader = strings.NewReader(text)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	fp := newFastParser(r, origin)
	for rr, ok := fp.Next(); ok; rr, ok = fp.Next() {
		fast.rrs = append(fast.rrs, rr)
	}
	fast.err = fp.Err()
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		slow.rrs = append(slow.rrs, rr)
	}
	slow.err = zp.Err()
	return fast, slow
}

func samePacked(a, b dns.RR) bool {
	if a.String() != b.String() || *a.Header() != *b.Header() {
		return false
	}
	ba := make([]byte, dns.Len(a)+64)
	bb := make([]byte, dns.Len(b)+64)
	na, ea := dns.PackRR(a, ba, 0, nil, false)
	nb, eb := dns.PackRR(b, bb, 0, nil, false)
	return (ea == nil) == (eb == nil) && bytes.Equal(ba[:na], bb[:nb])
}

func compareParsers(t testing.TB, text string) {
	t.Helper()
	for _, oneByte := range []bool{false, true} {
		fast, slow := parseBoth(text, oneByte)
		if (fast.err == nil) != (slow.err == nil) || (fast.err != nil && fast.err.Error() != slow.err.Error()) {
			t.Fatalf("errors differ: fast %v, ZoneParser %v\n%q", fast.err, slow.err, text)
		}
		if len(fast.rrs) != len(slow.rrs) {
			t.Fatalf("%d records, ZoneParser %d\n%q", len(fast.rrs), len(slow.rrs), text)
		}
		for i := range fast.rrs {
			if !samePacked(fast.rrs[i], slow.rrs[i]) {
				t.Fatalf("record %d: fast %q, ZoneParser %q", i, fast.rrs[i], slow.rrs[i])
			}
		}
	}
}

var parserCases = []string{
	"example. 300 IN A 192.0.2.1\n",
	"example. 300 A 192.0.2.1\n\t600 IN AAAA 2001:db8::1\n  ; comment\n\nexample. IN 60 NS ns.example.\n",
	"example. 300 IN RRSIG A 13 1 300 ( 20270101000000\n\t20260101000000 1234 example.\n\tabc def\n\tghi== ) ; trailing\n",
	"example. 300 IN NSEC a.example. A NS SOA RRSIG NSEC DNSKEY TYPE65000\n",
	"example. 300 IN NSEC3 1 1 0 - 0123456789ABCDEFGHIJKLMNOPQRSTUV A RRSIG\n",
	"example. 300 IN NSEC3 1 0 10 aabb 0123456789ABCDEFGHIJKLMNOPQRSTUV\n",
	"example. 300 IN DS 1 13 2 ( abcdef\n 012345 )\n",
	"example. 300 IN DNSKEY 257 3 13 abc\n def\n",
	"example. 300 IN DNSKEY 257 3 13 ( abc\n def )\n",
	"example. 300 IN SOA ns hostmaster ( 1 ; serial\n 2 3 4 5 )\n",
	"example. 300 IN NSEC3PARAM 1 0 0 -\nexample. 300 IN MX 10 mail\nwww.example. 300 IN CNAME @\n",
	"$TTL 60\nexample. IN A 192.0.2.1\nfoo A 192.0.2.2\n",
	"example. 300 IN A 192.0.2.1\n$ORIGIN sub.example.\nx 300 A 192.0.2.3\n\t A 192.0.2.4\n",
	"example. 300 IN A 192.0.2.1\nexample. IN TXT \"quoted; not a comment\"\nexample. A 192.0.2.5\n",
	"example. 300 IN A 192.0.2.1\nweird\\.name.example. 300 A 192.0.2.2\n",
	"example. 300 IN A 300.1.1.1\n",
	"example. 300 IN A 192.0.2.1\nexample. 300 IN A 192.0.2.1 extra\n",
	"example. 300 IN RRSIG A 13 1 300 1767225600 20260101000000 1234 example. abc\n",
	"example. 300 IN RRSIG A ECDSAP256SHA256 1 300 20270101000000 20260101000000 1234 example. abc\n",
	"example. 300 IN NSEC3 1 1 0 -\n",
	"example. IN A 192.0.2.1\n",
	"\tA 192.0.2.1\n",
	"example. 300 IN IN A 192.0.2.1\n",
	"example. 300 600 A 192.0.2.1\n",
	"example. 1h A 192.0.2.1\n",
	"example. 300 CH A 192.0.2.1\n",
	"(example. 300 A 192.0.2.1)\n",
	"example. 300 IN A ( 192.0.2.1\n",
	"example. 300 IN A 192.0.2.1 )\n",
	"example. 300 IN A 192.0.2.1\r\nexample. 300 A 192.0.2.2\r\n",
	"example. 300 IN A 192.0.2.1\n$INCLUDE /etc/hosts\n",
	"example. 300 IN A 192.0.2.1\n$GENERATE 1-3 h$ A 192.0.2.$\n",
	"example. 300 in a 192.0.2.1\nEXAMPLE. 300 In NsEc next.example. a rrsig nsec\n",
	"example. 300 IN AAAA ::ffff:192.0.2.1\nexample. 300 IN A ::1\n",
	"example. 4294967295 IN A 192.0.2.1\nexample. 4294967296 IN A 192.0.2.1\n",
	"example. 300 IN NS foo\n",
	"example. 300 IN A 192.0.2.1 ; no newline at the end",
}

func TestFastParserMatchesZoneParser(t *testing.T) {
	for _, text := range parserCases {
		compareParsers(t, text)
	}
	o := defaultOpts(t, origin, dns.RSASHA256)
	compareParsers(t, sign(t, origin, richZone, o).text())
	o.nsec3 = true
	compareParsers(t, sign(t, origin, richZone, o).text())
}

// TestFastParserOnSigners compares on what dnssec-signzone writes in each
// of its formats, and on the benchmark's cached zones when there.
func TestFastParserOnSigners(t *testing.T) {
	keygen := needTool(t, "dnssec-keygen", "bind9-utils")
	signzone := needTool(t, "dnssec-signzone", "bind9-utils")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(toolZone), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, dir, keygen, "-q", "-K", dir, "-a", "ECDSAP256SHA256", "-f", "KSK", origin)
	runTool(t, dir, keygen, "-q", "-K", dir, "-a", "ECDSAP256SHA256", origin)
	for _, format := range []string{"text", "full"} {
		out := filepath.Join(dir, "zone."+format)
		runTool(t, dir, signzone, "-q", "-S", "-K", dir, "-P", "-O", format, "-3", "-", "-o", origin, "-f", out, "zone")
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		compareParsers(t, string(b))
	}
}

func FuzzFastParser(f *testing.F) {
	for _, c := range parserCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, text string) {
		compareParsers(t, text)
	})
}

// TestFastParserStaysFast: on a signer's usual output nothing is handed
// off (else the fast path would be dead code passing the tests above).
func TestFastParserStaysFast(t *testing.T) {
	plain := "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\nns1 AAAA 2001:db8::1\nd NS ns.d\nd DS 1 13 2 abcd\nns.d A 192.0.2.2\n*.w A 192.0.2.3\n"
	for _, nsec3 := range []bool{false, true} {
		o := defaultOpts(t, origin, dns.ECDSAP256SHA256)
		o.nsec3 = nsec3
		text := sign(t, origin, plain, o).text()
		compareParsers(t, text)
		fp := newFastParser(strings.NewReader(text), origin)
		n := 0
		for _, ok := fp.Next(); ok; _, ok = fp.Next() {
			n++
		}
		if fp.zp != nil || fp.Err() != nil || n < 20 {
			t.Fatalf("handed off: %v, error %v, %d records", fp.zp != nil, fp.Err(), n)
		}
	}
}
