// Package gatewait waits for the publish gate's decision, for the lab's
// scripts and the demo. It stands apart from sandbox, which the packages
// the gate is built on import in their tests.
package gatewait

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/publish"
)

// Decided waits (up to 60 s) until the publish gate, keeping its state in
// stateDir, has decided the version of zone in the signer's file signed:
// served, held or refused.
func Decided(stateDir, zone, signed string) error {
	b, err := os.ReadFile(signed)
	if err != nil {
		return err
	}
	serial := uint32(0)
	zp := dns.NewZoneParser(bytes.NewReader(b), dns.Fqdn(zone), "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, ok := rr.(*dns.SOA); ok {
			serial = soa.Serial
			break
		}
	}
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		zones, err := publish.Status(stateDir, zone, "")
		if err != nil || len(zones) != 1 {
			last = fmt.Sprint(err)
			continue
		}
		z := zones[0]
		if (z.Served != nil && z.Served.Serial == serial) || (z.Held != nil && z.Held.Serial == serial) || (z.Refused != nil && z.Refused.Serial == serial) {
			return nil
		}
		last = fmt.Sprintf("%+v", z)
	}
	return fmt.Errorf("the publish gate did not decide serial %d of %s in 60s: %s", serial, zone, last)
}
