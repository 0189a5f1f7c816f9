package parentsync

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/parent"
)

// key makes a real ECDSA P-256 DNSKEY of zone and returns its public key,
// key tag and the DS the parent would serve of it.
func key(t *testing.T, zone string) ([]byte, int, parent.DS) {
	t.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := append(priv.PublicKey.X.FillBytes(make([]byte, 32)), priv.PublicKey.Y.FillBytes(make([]byte, 32))...)
	k.PublicKey = base64.StdEncoding.EncodeToString(pub)
	ds := k.ToDS(dns.SHA256)
	return pub, int(k.KeyTag()), parent.DS{KeyTag: int(ds.KeyTag), Algorithm: 13, DigestType: 2, Digest: strings.ToLower(ds.Digest)}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	pub, tag, ds := key(t, "a.example")
	z := &enforcer.Zone{Name: "a.example", Policy: &enforcer.Policy{ParentDSTTL: time.Hour}}
	use := func(st enforcer.DSState) *enforcer.Use {
		return &enforcer.Use{Zone: z, Role: enforcer.KSK, KeyTag: tag, DSAtParent: st,
			Key: &enforcer.Key{Locator: "00aa", Algorithm: 13}}
	}
	served := func(sets ...[]parent.DS) []parent.ServerAnswer {
		var out []parent.ServerAnswer
		for i, s := range sets {
			a := parent.ServerAnswer{Server: string(rune('a'+i)) + ":53", DS: s}
			if s == nil {
				a.Err = errors.New("i/o timeout")
			}
			out = append(out, a)
		}
		return out
	}
	forged := ds
	forged.Digest = strings.Repeat("0", 64)
	empty := ledger.Book(nil)
	vanished := func(at time.Time) (*ledger.DSKey, *ledger.DSBook) {
		b := ledger.Book([]ledger.DSEvent{{ID: "1", Time: at, Kind: ledger.Retract, Action: ledger.Vanished, Zone: "a.example", KeyTag: tag, Locator: "00aa"}})
		return b.Find("a.example", "00aa", tag, 13), b
	}
	held := ledger.Book([]ledger.DSEvent{{ID: "1", Time: now, Kind: ledger.Retract, Action: ledger.Held, Zone: "a.example", KeyTag: tag,
		Locator: "00aa", Fingerprint: "ff", Reason: "its successor's DS is not at the parent yet"}})
	rv, bv := vanished(now.Add(-30 * time.Minute))
	rold, bold := vanished(now.Add(-2 * time.Hour))
	for _, c := range []struct {
		name    string
		u       *enforcer.Use
		r       *ledger.DSKey
		b       *ledger.DSBook
		answers []parent.ServerAnswer
		pub     []byte
		want    string
		reason  string
	}{
		{"seen on every server", use(enforcer.DSSubmitted), nil, empty, served([]parent.DS{ds}, []parent.DS{ds}), pub, ActSeen, "every parent server serves its DS (a:53, b:53)"},
		{"one server lags", use(enforcer.DSSubmitted), nil, empty, served([]parent.DS{ds}, []parent.DS{}), pub, ActWait, "a:53 does, b:53 does not"},
		{"a server not read", use(enforcer.DSSubmitted), nil, empty, served([]parent.DS{ds}, nil), pub, ActUnknown, "nothing told: i/o timeout"},
		{"a forged digest is not the key's", use(enforcer.DSSubmitted), nil, empty, served([]parent.DS{forged}, []parent.DS{forged}), pub, ActWait, "no parent server serves its DS yet"},
		{"no public key: not told", use(enforcer.DSSubmitted), nil, empty, served([]parent.DS{ds}, []parent.DS{ds}), nil, ActUnknown, "cannot be told"},
		{"retracted, still served by one", use(enforcer.DSRetracted), nil, empty, served([]parent.DS{}, []parent.DS{ds}), pub, ActWait, "b:53 still serve its DS (a:53 no longer)"},
		{"retracted, gone now: the TTL runs", use(enforcer.DSRetracted), nil, empty, served([]parent.DS{}, []parent.DS{}), pub, ActWait, "ds-gone from 2026-12-03T13:00:00Z"},
		{"gone for less than the TTL", use(enforcer.DSRetracted), rv, bv, served([]parent.DS{}, []parent.DS{}), pub, ActWait, "since 2026-12-03T11:30:00Z"},
		{"gone for longer than the TTL", use(enforcer.DSRetracted), rold, bold, served([]parent.DS{}, []parent.DS{}), pub, ActGone, "its TTL (1h0m0s) has passed"},
		{"gone, a server not read", use(enforcer.DSRetracted), rold, bold, served([]parent.DS{}, nil), pub, ActUnknown, "nothing told"},
		{"held by ods-keyguard: never ds-gone", use(enforcer.DSRetracted), held.Find("a.example", "00aa", tag, 13), held, served([]parent.DS{}, []parent.DS{}), pub, ActHeld, "do not remove that DS"},
		{"the parent's TTL is longer than the policy's", use(enforcer.DSRetracted), rold, bold,
			func() []parent.ServerAnswer {
				a := served([]parent.DS{}, []parent.DS{})
				a[1].TTL = 3 * time.Hour
				return a
			}(), pub, ActWait, "until its TTL (3h0m0s) has passed"},
		{"gone, no public key, another key's tag only", use(enforcer.DSRetracted), rold, bold, served([]parent.DS{}, []parent.DS{}), nil, ActGone, ""},
		{"no server asked: nothing told", use(enforcer.DSSubmitted), nil, empty, nil, pub, ActUnknown, "no parent server was asked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			it := decide(z, c.u, c.r, c.b, c.answers, c.pub, now)
			if it.Action != c.want || !strings.Contains(it.Reason, c.reason) {
				t.Errorf("got %s: %s; want %s with %q", it.Action, it.Reason, c.want, c.reason)
			}
		})
	}
}

// fakeEnforcer answers each call with the next of its answers.
type fakeEnforcer struct {
	answers []error
	calls   int
}

func (f *fakeEnforcer) Run(_ context.Context, args ...string) (string, error) {
	err := f.answers[f.calls]
	f.calls++
	if err != nil && strings.Contains(err.Error(), "0 KSKs changed") {
		return "0 KSK matches found.\n0 KSKs changed.\n", err
	}
	if err != nil {
		return "", err
	}
	return "1 KSK matches found.\n1 KSKs changed.\n", nil
}

// "0 KSKs changed" is tried again, up to maxRetries times; any other
// failure, or a refusal every time, is the command's failure.
func TestTellRetries(t *testing.T) {
	saved := retryAfter
	retryAfter = time.Millisecond
	defer func() { retryAfter = saved }()
	refused := errors.New("ods-enforcer key ds-seen: exit status 12: 0 KSKs changed.")
	down := errors.New("ods-enforcer key ds-seen: cannot connect to the enforcer")
	for _, c := range []struct {
		name    string
		answers []error
		calls   int
		ok      bool
	}{
		{"taken at once", []error{nil}, 1, true},
		{"taken a second later", []error{refused, nil}, 2, true},
		{"taken at the last try", []error{refused, refused, refused, refused, nil}, 5, true},
		{"refused every time", []error{refused, refused, refused, refused, refused}, 5, false},
		{"refused, then another failure", []error{refused, down}, 2, false},
		{"another failure: not tried again", []error{down, nil}, 1, false},
	} {
		f := &fakeEnforcer{answers: c.answers}
		err := tell(context.Background(), f, "key", "ds-seen", "--zone", "a.example", "--cka_id", "00aa")
		if (err == nil) != c.ok || f.calls != c.calls {
			t.Errorf("%s: err %v after %d calls; want ok %v after %d", c.name, err, f.calls, c.ok, c.calls)
		}
	}
}
