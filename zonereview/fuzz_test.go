package zonereview

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzReview feeds the parser path hostile text: no panic, and a Report
// that keeps to its cap.
func FuzzReview(f *testing.F) {
	o := defaultOpts(f, origin, dns.ECDSAP256SHA256)
	small := "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n*.w TXT x\na.b.c AAAA ::1\nd NS ns.d\nns.d A 192.0.2.2\n"
	nsec := sign(f, origin, small, o).text()
	o.nsec3, o.optOut = true, true
	nsec3 := sign(f, origin, small, o).text()
	f.Add(nsec)
	f.Add(nsec3)
	f.Add(strings.ReplaceAll(nsec3, "NSEC3 1 1 0", "NSEC3 1 1 65535"))
	f.Add(nsec[:len(nsec)/2])
	f.Add("example. 300 IN RRSIG A 13 200 300 20270101000000 20260101000000 1 example. AAAA\n")
	f.Add("$GENERATE 1-10 n$ A 192.0.2.1\n")
	f.Add("\\000\\.\\255.example. 300 IN NSEC3 1 0 0 - 00000000000000000000000000000000 A\n")
	f.Add("example. 300 IN DNSKEY 257 3 8 AwEAAQ==\nexample. 300 IN DNSKEY 257 3 13 AA==\n")
	f.Fuzz(func(t *testing.T, text string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := Review(ctx, strings.NewReader(text), origin, Options{Now: testNow, Workers: 2, MaxFindings: 5})
		if err != nil {
			return
		}
		if len(rep.Findings) > 5 || rep.FindingsTotal < len(rep.Findings) || rep.Errors > rep.FindingsTotal {
			t.Fatalf("findings %d of %d, %d errors", len(rep.Findings), rep.FindingsTotal, rep.Errors)
		}
		SafeStep(rep, rep, testNow, Proof{})
	})
}
