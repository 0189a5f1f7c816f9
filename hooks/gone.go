package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// A zone deleted from the enforcer keeps its DS at the parent: OpenDNSSEC
// 2.1 runs no retract command when it deletes a zone. Served unsigned from
// then on, the zone fails validation. Whether the DS must go (the zone goes
// unsigned) or stay (another signer takes the zone over with these keys)
// is the operator's call, so ods-keyguard never retracts it on its own: it
// reports it, and `hook retract-gone` does what the operator decides.

// GoneZones lists, sorted, the zones the enforcer no longer has whose DS
// the records have at the parent, unsettled.
func GoneZones(st *enforcer.State, b *ledger.DSBook) []string {
	have := map[string]bool{}
	for _, z := range st.Zones {
		have[strings.ToLower(z.Name)] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range b.Keys() {
		if !have[k.Zone] && !seen[k.Zone] && k.Unsettled() {
			seen[k.Zone] = true
			out = append(out, k.Zone)
		}
	}
	sort.Strings(out)
	return out
}

// goneKeys are the keys of zone whose DS the records have at the parent,
// unsettled.
func goneKeys(b *ledger.DSBook, zone string) []*ledger.DSKey {
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	var out []*ledger.DSKey
	for _, k := range b.Keys() {
		if k.Zone == zone && k.Unsettled() {
			out = append(out, k)
		}
	}
	return out
}

// goneFindings reports each DS that a deleted zone left at the parent. With
// the parent read, a DS it no longer publishes is no finding.
func goneFindings(zs *ZoneDS, keys []*ledger.DSKey) {
	for _, k := range keys {
		where := "by the records"
		if a := zs.Parent; a != nil && a.Err == nil {
			if !publishes(a, k) {
				continue
			}
			where = "and the parent still publishes it"
		}
		zs.Findings = append(zs.Findings, Finding{Severity: Warning, Category: "hook", Zone: k.Zone, Key: k.Locator, Text: fmt.Sprintf(
			"zone %s is no longer in the enforcer, but the DS of key tag %d (key %s) has been at the parent since %s, %s: the enforcer does not retract a deleted zone's DS, and a zone served unsigned with it fails validation; ods-keyguard hook retract-gone --zone %s sends the retraction (or records with --by-hand that it was removed, or stays for another signer)",
			k.Zone, k.KeyTag, dash(k.Locator), k.Since().UTC().Format(human.Minute), where, k.Zone)})
	}
}

// publishes says whether the parent's answer may have a DS of k: one that
// matches it by digest, or one of its key tag that cannot be told apart
// (the records lack its DNSKEY). A warning is cleared only on proof.
func publishes(a *parent.Answer, k *ledger.DSKey) bool {
	for _, ds := range a.DS {
		if m, known := ds.Match(k.Zone, k.KeyTag, k.Algorithm, publicKeyOf(k)); m || !known {
			return true
		}
	}
	return false
}

// RetractGone settles the DS that the records have at the parent for zone,
// once the enforcer no longer has the zone. It forwards their retraction
// through [hooks] ds_retract_forward, in one run of it; with byHand it
// records instead that the operator settled them (removed at the registrar
// by hand, or kept on purpose for another signer). It returns the keys.
func (g *Guard) RetractGone(ctx context.Context, zone, reason, operator string, byHand bool, out io.Writer) ([]*ledger.DSKey, error) {
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	st, err := g.Source.State(ctx)
	if err != nil {
		return nil, err
	}
	for _, z := range st.Zones {
		if strings.EqualFold(z.Name, zone) {
			return nil, fmt.Errorf("zone %s is in the enforcer: it asks for its DS to be retracted itself, through the hook", zone)
		}
	}
	book, unlock, err := g.lockedBook(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	keys := goneKeys(book, zone)
	if len(keys) == 0 {
		return nil, fmt.Errorf("zone %s: the records have no DS of it at the parent (ods-keyguard hook history --zone %s)", zone, zone)
	}
	if byHand {
		var evs []ledger.DSEvent
		for _, k := range keys {
			evs = append(evs, ledger.DSEvent{Kind: ledger.Retract, Action: ledger.Settled, Zone: k.Zone, KeyTag: k.KeyTag,
				Algorithm: k.Algorithm, Locator: k.Locator, Fingerprint: k.Fingerprint,
				Reason: fmt.Sprintf("settled by %s: %s", operator, reason), By: operator})
			g.Log.Warning(fmt.Sprintf("ds-retract: zone %s key tag %d: settled by hand by %s: %s", k.Zone, k.KeyTag, operator, reason))
		}
		if err := g.Ledger.AddDS(ctx, evs...); err != nil {
			return nil, err
		}
		return keys, g.Ledger.CompactDS(ctx)
	}
	if g.RetractForward == "" {
		return nil, errors.New("no [hooks] ds_retract_forward is configured: have the registrar remove the DS, then record it with --by-hand")
	}
	var subs []Submission
	locators := map[string]string{}
	for _, k := range keys {
		s := ParseLine(k.Line)
		if k.Line == "" || s.Err != "" {
			return nil, fmt.Errorf("zone %s key tag %d: its DNSKEY is not in the records, so its retraction cannot be sent: have the registrar remove the DS, then record it with --by-hand", zone, k.KeyTag)
		}
		s.CKAID = k.Locator
		subs = append(subs, s)
		locators[s.Fingerprint] = k.Locator
	}
	var o Outcome
	g.send(ctx, &o, ledger.Retract, g.RetractForward, subs, locators, out)
	if err := errors.Join(o.ForwardErr, o.RecordErr); err != nil {
		return nil, err
	}
	return keys, g.Ledger.CompactDS(ctx)
}
