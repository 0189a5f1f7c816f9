package main

import (
	"context"
	"crypto"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	_ "modernc.org/sqlite"
)

// benchPublish measures the publish gate's fixed cost per call, everything
// but reading the zone, as a hosting platform pays it: the enforcer's
// database holds zones zones of one CSK each (zones keys; rows written as
// ods-enforcerd writes them, the key pairs made here, the HSM never
// touched), a confirmed ceremony covers every key but those of the last
// tenth of the zones, and the DS records have each zone's DS forwarded.
// Each call gets a signed zone of five records: its review takes
// microseconds, the rest is what the gate costs. nsample zones are run.
func benchPublish(bin string, zones, nsample int) (string, error) {
	dir, err := os.MkdirTemp("", "ods-keyguard-bench-publish")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	e, err := sandbox.Configure(sandbox.Options{Dir: filepath.Join(dir, "ods"), SoftHSMConf: filepath.Join(dir, "no-softhsm.conf")})
	if err != nil {
		return "", err
	}
	keys, err := fillEnforcer(e.DB, zones)
	if err != nil {
		return "", err
	}
	state := filepath.Join(dir, "state")
	uncovered := zones - zones/10
	if err := fillLedger(state, keys, uncovered); err != nil {
		return "", err
	}
	ns := filepath.Join(dir, "ns")
	if err := os.MkdirAll(ns, 0o755); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "keyguard.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`opendnssec_conf = %q
state_dir = %q

[publish]
zone_file = %q
reload = ["true"]
`, e.Conf, state, filepath.Join(ns, "%zone.zone"))), 0o600); err != nil {
		return "", err
	}
	gate := filepath.Join(dir, "ods-keyguard-publish")
	if err := os.Symlink(bin, gate); err != nil {
		return "", err
	}
	setup := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench: %d zones and keys in kasp.db, a ceremony of %d keys, %d DS records, in %s\n", zones, uncovered, zones, setup.Round(time.Second))

	// In-process: one zone's rows against the whole database, the read
	// the gate would need without ReadZone.
	ctx := context.Background()
	ds := enforcer.Datastore{SQLite: e.DB}
	var whole, one []time.Duration
	for i := 0; i < 5; i++ {
		t := time.Now()
		if _, err := enforcer.ReadDatastore(ctx, ds); err != nil {
			return "", err
		}
		whole = append(whole, time.Since(t))
		t = time.Now()
		if _, err := enforcer.ReadDatastoreZone(ctx, ds, keys[i*97%zones].zone); err != nil {
			return "", err
		}
		one = append(one, time.Since(t))
	}

	// And the records the gate reads only when it must: the ceremonies (a
	// signing key not known to be backed up yet) and the DS records (a
	// DS not known to be at the parent yet).
	var cer, dsr []time.Duration
	for i := 0; i < 5; i++ {
		l, err := ledger.New(ctx, ledger.Options{Dir: state, Group: -1, ReadOnly: true})
		if err != nil {
			return "", err
		}
		t := time.Now()
		if _, err := l.Ceremonies(ctx); err != nil {
			return "", err
		}
		cer = append(cer, time.Since(t))
		t = time.Now()
		if _, err := l.DS(ctx); err != nil {
			return "", err
		}
		dsr = append(dsr, time.Since(t))
		l.Close()
	}

	env := append(os.Environ(), "ODS_KEYGUARD_CONFIG="+conf, "ODS_KEYGUARD_SYSLOG="+filepath.Join(dir, "no-syslog"))
	// (Peak RSS is not reported: a child forked from this process counts
	// this one's, the 10,000 keys in memory, in its own.)
	run := func(argv []string) (time.Duration, error) {
		wall, _, err := measureWith(argv, "", env, time.Minute)
		return wall, err
	}
	samples := []sample{
		{name: "ods-keyguard --version", note: "starting the process, the floor"},
		{name: "ods-keyguard publish review FILE --origin ZONE", note: "the review alone, no configuration"},
		{name: "ods-keyguard-publish ZONE FILE: a zone's first version", ref: "ods-keyguard --version", note: "ceremonies and DS records read once, its keys and DS remembered"},
		{name: "ods-keyguard-publish ZONE FILE: the next version", ref: "ods-keyguard --version", note: "keys known backed up: no ceremony, no HSM"},
		{name: "ods-keyguard-publish ZONE FILE: held (keys not backed up)", ref: "ods-keyguard --version", note: "ceremonies read at every version, the DS records at the first"},
	}
	step := max(1, uncovered/nsample)
	for i := 0; i < nsample; i++ {
		k := keys[(i*step)%uncovered]
		v1, v2, err := k.write(dir, 1, 2)
		if err != nil {
			return "", err
		}
		for j, argv := range [][]string{
			{bin, "--version"},
			{bin, "publish", "review", v1, "--origin", k.zone},
			{gate, k.zone, v1},
			{gate, k.zone, v2},
		} {
			wall, err := run(argv)
			if err != nil {
				return "", fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
			}
			samples[j].wall = append(samples[j].wall, wall)
		}
		h := keys[uncovered+i%(zones-uncovered)]
		hv, _, err := h.write(dir, uint32(10+i), 0)
		if err != nil {
			return "", err
		}
		wall, err := run([]string{gate, h.zone, hv})
		if err != nil && !strings.HasPrefix(err.Error(), "exit status 1") {
			return "", fmt.Errorf("held zone %s: %w", h.zone, err)
		}
		samples[4].wall = append(samples[4].wall, wall)
		if i%20 == 0 {
			fmt.Fprintf(os.Stderr, "bench: %d/%d zones\n", i, nsample)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %d zones, %d keys (one CSK each, ECDSA P-256) in the enforcer's SQLite database; the files ledger\n\n", zones, zones)
	fmt.Fprintf(&b, "A confirmed ceremony covers the keys of %d zones (its record lists %d keys); the DS records hold a forwarded DS for every zone. %d zones sampled, each a signed zone of five records (its review takes about a millisecond: the rest of a call is the fixed cost); reload is `true`. Set up in %s.\n\n", uncovered, uncovered, nsample, setup.Round(time.Second))
	b.WriteString("| call | runs | median wall | p90 wall | vs process start | what it pays for |\n|---|---|---|---|---|---|\n")
	floor := median(samples[0].wall)
	for _, s := range samples {
		m := median(s.wall)
		ratio := "-"
		if s.name == samples[0].name {
			ratio = "reference"
		}
		if s.ref != "" {
			ratio = fmt.Sprintf("+%s", (m - floor).Round(100*time.Microsecond))
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s | %s | %s |\n", s.name, len(s.wall), m.Round(100*time.Microsecond),
			p90(s.wall).Round(100*time.Microsecond), ratio, s.note)
	}
	fmt.Fprintf(&b, "\nWhere the rest goes, measured in the benchmark's own process (median of 5): the enforcer's database, one zone's rows (`enforcer.ReadZone`, what the gate reads) %s, the whole database of %d zones (`enforcer.Read`, what check reads) %s; the ledger's ceremonies (%d keys) %s and DS records (%d) %s, which the gate reads only for a key it does not know to be backed up, or a DS it does not know to be at the parent.\n",
		median(one).Round(10*time.Microsecond), zones, median(whole).Round(time.Millisecond), uncovered, median(cer).Round(time.Millisecond), zones, median(dsr).Round(time.Millisecond))
	return b.String(), nil
}

func p90(v []time.Duration) time.Duration {
	s := append([]time.Duration(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)*9/10]
}

// benchKey is a zone of the benchmark and its CSK.
type benchKey struct {
	zone    string
	locator string
	rr      *dns.DNSKEY
	priv    crypto.Signer
}

// write signs two versions of the zone (serials a and b; b 0: none) and
// returns their paths.
func (k benchKey) write(dir string, a, b uint32) (string, string, error) {
	var paths []string
	for _, serial := range []uint32{a, b} {
		if serial == 0 {
			paths = append(paths, "")
			continue
		}
		origin := k.zone + "."
		now := time.Now()
		var out strings.Builder
		sign := func(rrs ...dns.RR) error {
			for _, r := range rrs {
				out.WriteString(r.String() + "\n")
			}
			s := &dns.RRSIG{Hdr: dns.RR_Header{Name: rrs[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 3600},
				KeyTag: k.rr.KeyTag(), SignerName: origin, Algorithm: k.rr.Algorithm,
				Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(14 * 24 * time.Hour).Unix())}
			if err := s.Sign(k.priv, rrs); err != nil {
				return err
			}
			out.WriteString(s.String() + "\n")
			return nil
		}
		rr := func(s string) dns.RR { r, _ := dns.NewRR(s); return r }
		for _, set := range [][]dns.RR{
			{rr(fmt.Sprintf("%s 3600 IN SOA ns1.%s hostmaster.%s %d 7200 3600 1209600 3600", origin, origin, origin, serial))},
			{rr(fmt.Sprintf("%s 3600 IN NS ns1.%s", origin, origin))},
			{k.rr},
			{rr(fmt.Sprintf("%s 3600 IN NSEC ns1.%s NS SOA RRSIG NSEC DNSKEY", origin, origin))},
			{rr(fmt.Sprintf("ns1.%s 3600 IN A 192.0.2.1", origin))},
			{rr(fmt.Sprintf("ns1.%s 3600 IN NSEC %s A RRSIG NSEC", origin, origin))},
		} {
			if err := sign(set...); err != nil {
				return "", "", err
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("%s.%d", k.zone, serial))
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
			return "", "", err
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1], nil
}

// fillEnforcer writes n zones of one CSK each into kasp.db, as
// ods-enforcerd would have them: the key in use, its DS seen at the parent.
func fillEnforcer(path string, n int) ([]benchKey, error) {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO policy (id, name, description, passthrough, signaturesResign, signaturesRefresh, signaturesJitter,
		signaturesInceptionOffset, signaturesValidityDefault, signaturesValidityDenial, signaturesValidityKeyset, signaturesMaxZoneTtl,
		denialType, denialOptout, denialTtl, denialResalt, denialAlgorithm, denialIterations, denialSaltLength, denialSalt, denialSaltLastChange,
		keysTtl, keysRetireSafety, keysPublishSafety, keysShared, keysPurgeAfter, zonePropagationDelay, zoneSoaTtl, zoneSoaMinimum,
		zoneSoaSerial, parentRegistrationDelay, parentPropagationDelay, parentDsTtl, parentSoaTtl, parentSoaMinimum)
		VALUES (1, 'hosting', '', 0, 7200, 259200, 43200, 3600, 1209600, 1209600, 0, 3600, 0, 0, 0, 0, 0, 0, 0, '', 0,
		3600, 3600, 3600, 0, 1209600, 3600, 3600, 3600, 0, 3600, 3600, 3600, 3600, 3600)`); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(`INSERT INTO policyKey (id, policyId, role, algorithm, bits, lifetime, repository, standby, manualRollover, rfc5011, minimize)
		VALUES (1, 1, 3, 13, 256, 31536000, 'SoftHSM', 0, 1, 0, 0)`); err != nil {
		return nil, err
	}
	zone, _ := tx.Prepare(`INSERT INTO zone (id, policyId, name, signconfNeedsWriting, signconfPath, nextChange, ttlEndDs, ttlEndDk, ttlEndRs,
		rollKskNow, rollZskNow, rollCskNow, inputAdapterType, inputAdapterUri, outputAdapterType, outputAdapterUri, nextKskRoll, nextZskRoll, nextCskRoll)
		VALUES (?, 1, ?, 0, '/s', 0, 0, 0, 0, 0, 0, 0, 'File', '/in', 'File', '/out', 0, 0, 0)`)
	key, _ := tx.Prepare(`INSERT INTO hsmKey (id, policyId, locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup)
		VALUES (?, 1, ?, 2, 256, 13, 3, ?, 0, 1, 'SoftHSM', 0)`)
	data, _ := tx.Prepare(`INSERT INTO keyData (id, zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke, standby,
		activeZsk, publish, activeKsk, dsAtParent, keytag, minimize) VALUES (?, ?, ?, 13, ?, 3, 0, 0, 0, 1, 1, 1, 3, ?, 0)`)
	st, _ := tx.Prepare(`INSERT INTO keyState (keyDataId, type, state, lastChange, minimize, ttl) VALUES (?, ?, 2, ?, 0, 3600)`)
	var out []benchKey
	now := time.Now().Add(-30 * 24 * time.Hour).Unix()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("z%06d.example", i)
		rr := &dns.DNSKEY{Hdr: dns.RR_Header{Name: name + ".", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600}, Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
		priv, err := rr.Generate(256)
		if err != nil {
			return nil, err
		}
		loc := make([]byte, 16)
		copy(loc, fmt.Sprintf("%016d", i))
		k := benchKey{zone: name, locator: hex.EncodeToString(loc), rr: rr, priv: priv.(crypto.Signer)}
		for _, x := range []struct {
			stmt *sql.Stmt
			args []any
		}{
			{zone, []any{i, name}}, {key, []any{i, k.locator, now}}, {data, []any{i, i, i, now, int(rr.KeyTag())}},
			{st, []any{i, 0, now}}, {st, []any{i, 1, now}}, {st, []any{i, 2, now}}, {st, []any{i, 3, now}},
		} {
			if _, err := x.stmt.Exec(x.args...); err != nil {
				return nil, err
			}
		}
		out = append(out, k)
	}
	return out, tx.Commit()
}

// fillLedger records a confirmed ceremony of the first covered keys, and a
// forwarded DS for every zone.
func fillLedger(state string, keys []benchKey, covered int) error {
	ctx := context.Background()
	l, err := ledger.New(ctx, ledger.Options{Dir: state, Group: -1, LockWait: time.Minute})
	if err != nil {
		return err
	}
	defer l.Close()
	s, err := l.Ceremonies(ctx)
	if err != nil {
		return err
	}
	c := &ledger.Ceremony{ID: ledger.NewID("SoftHSM", time.Now()), Repository: "SoftHSM", Status: ledger.Open}
	for _, k := range keys[:covered] {
		c.Keys = append(c.Keys, ledger.KeyRecord{Locator: k.locator, Role: "CSK"})
	}
	if err := s.SaveOpen(ctx, c); err != nil {
		return err
	}
	c.Status, c.Ended = ledger.Confirmed, time.Now().UTC()
	if err := s.End(ctx, c); err != nil {
		return err
	}
	var evs []ledger.DSEvent
	for _, k := range keys {
		fp := hex.EncodeToString([]byte(k.locator))[:64]
		evs = append(evs, ledger.DSEvent{Kind: ledger.Submit, Action: ledger.Forwarded, Zone: k.zone, KeyTag: int(k.rr.KeyTag()),
			Algorithm: 13, Locator: k.locator, Fingerprint: fp, By: "hook"})
	}
	if err := l.AddDS(ctx, evs...); err != nil {
		return err
	}
	unlock, err := l.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return l.CompactDS(ctx)
}

func writePublish(path, binary, table string) error {
	header := "## The publish gate's fixed cost per call\n\nRun %s, `make bench-publish`, %s.\nEach call is a process, as the signer's NotifyCommand is: median and 90th percentile of the zones sampled. \"vs process start\" is what a call costs beyond `ods-keyguard --version`.\n\n"
	return writeSection(path, "publish", fmt.Sprintf(header, machine(), version(binary))+table)
}
