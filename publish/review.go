package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/zonereview"
)

// The review on its own, without OpenDNSSEC: a signed zone file and the key
// facts given with it (the parent's DS set). What ods-keyguard publish
// review runs, for any signer's output: Cascade's signed-zone review hook,
// a dry run before the gate is put in place, a zone fetched by AXFR.

// ReviewOptions are the facts a review on its own is given.
type ReviewOptions struct {
	// DS is the parent's DS set (nil: the DNSKEY RRset's anchor is not
	// checked).
	DS []*dns.DS
	// Margin: signatures must stay valid at least this long.
	Margin time.Duration
	// Now is the time judged at (time.Now when zero).
	Now time.Time
}

// ReviewFile reviews the signed zone in path ("-": stdin) as origin.
func ReviewFile(ctx context.Context, path string, stdin io.Reader, origin string, o ReviewOptions) (*zonereview.Report, error) {
	r := stdin
	if path != "-" {
		f, err := openStaging(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return zonereview.Review(ctx, r, origin, zonereview.Options{Now: o.Now, Margin: o.Margin, ParentDS: o.DS})
}

// ReadDS reads the parent's DS set for origin from a file: DS records, or
// DNSKEY records (KSKs, whose SHA-256 DS is taken), in master-file format,
// as dig or dnssec-dsfromkey print them. An empty
// file is an empty set: nothing anchors the zone.
func ReadDS(path, origin string) ([]*dns.DS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--ds %s: %w", path, unwrap(err))
	}
	defer f.Close()
	out := []*dns.DS{}
	zp := dns.NewZoneParser(io.LimitReader(f, 1<<20), dns.Fqdn(origin), path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if !strings.EqualFold(rr.Header().Name, dns.Fqdn(origin)) {
			return nil, fmt.Errorf("--ds %s: %s is a record of %s, not of %s", path, dns.TypeToString[rr.Header().Rrtype], rr.Header().Name, dns.Fqdn(origin))
		}
		switch x := rr.(type) {
		case *dns.DS:
			out = append(out, x)
		case *dns.DNSKEY:
			if d := x.ToDS(dns.SHA256); d != nil {
				out = append(out, d)
			}
		default:
			return nil, fmt.Errorf("--ds %s: a %s record: want DS or DNSKEY records of %s", path, dns.TypeToString[rr.Header().Rrtype], dns.Fqdn(origin))
		}
	}
	if err := zp.Err(); err != nil {
		var pe *dns.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("--ds %s: %s", path, strings.TrimPrefix(pe.Error(), "dns: "))
		}
		return nil, fmt.Errorf("--ds %s: %w", path, err)
	}
	return out, nil
}
