// Package recovery supports the recovery part of the key backup procedure:
// which HSMs lost which keys, what the backup token can bring back, and how
// long each zone's signatures last, so that "go insecure" is decided from
// facts.
package recovery

import (
	"fmt"
	"os"
	"time"

	"github.com/miekg/dns"
)

// Signatures is what a signed zone file says about its RRSIGs.
type Signatures struct {
	Count    int       `json:"count"`
	Earliest time.Time `json:"earliest_expiration"` // the first RRSIG to expire
	Owner    string    `json:"earliest_owner"`
	Type     string    `json:"earliest_type"` // the type it covers
}

// ReadSignedZone reads a zone file in presentation format and finds the
// RRSIG that expires first.
func ReadSignedZone(path, origin string) (Signatures, error) {
	f, err := os.Open(path)
	if err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %w", path, unwrap(err))
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, dns.Fqdn(origin), path)
	zp.SetIncludeAllowed(false)
	var s Signatures
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		sig, isSig := rr.(*dns.RRSIG)
		if !isSig {
			continue
		}
		exp := serialTime(sig.Expiration)
		if s.Count == 0 || exp.Before(s.Earliest) {
			s.Earliest, s.Owner, s.Type = exp, sig.Header().Name, dns.TypeToString[sig.TypeCovered]
		}
		s.Count++
	}
	if err := zp.Err(); err != nil {
		return Signatures{}, fmt.Errorf("signed zone %s: %w", path, err)
	}
	if s.Count == 0 {
		return Signatures{}, fmt.Errorf("signed zone %s: no RRSIG in it", path)
	}
	return s, nil
}

// serialTime reads an RRSIG time, an RFC 1982 serial of seconds: the
// nearest time to now that has that value modulo 2^32.
func serialTime(v uint32) time.Time {
	now := time.Now().Unix()
	base := now &^ 0xFFFFFFFF
	t := base + int64(v)
	switch {
	case t-now > 1<<31:
		t -= 1 << 32
	case now-t > 1<<31:
		t += 1 << 32
	}
	return time.Unix(t, 0).UTC()
}

func unwrap(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
