package ledger

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"
)

// sameBook says whether two readings of the DS records decide the same:
// the same entries kept back, the same facts per key.
func sameBook(a, b *DSBook) bool {
	if !a.Created.Equal(b.Created) || len(a.Pending) != len(b.Pending) || len(a.order) != len(b.order) {
		return false
	}
	for i := range a.Pending {
		if !reflect.DeepEqual(*a.Pending[i], *b.Pending[i]) {
			return false
		}
	}
	for i, x := range a.order {
		y := b.order[i]
		if x.Zone != y.Zone || x.KeyTag != y.KeyTag || x.Algorithm != y.Algorithm || x.Locator != y.Locator ||
			x.Fingerprint != y.Fingerprint || lineFP(x.Line) != lineFP(y.Line) || !x.Submitted.Equal(y.Submitted) ||
			!x.Retracted.Equal(y.Retracted) || !x.Adopted.Equal(y.Adopted) || !x.Settled.Equal(y.Settled) ||
			!x.InFlight.Equal(y.InFlight) || x.NeverForwarded() != y.NeverForwarded() || x.AtParent() != y.AtParent() {
			return false
		}
	}
	return true
}

// lineFP is the public key a DNSKEY line carries (its TTL or comment may
// differ from one request to the next).
func lineFP(line string) string {
	fp, _ := lineKey(line)
	return fp
}

// Compaction bounds the records without changing what they decide: random
// histories of many keys, each cut to a few hundred events.
func TestBoundKeepsWhatDecides(t *testing.T) {
	actions := []string{Withheld, Withheld, Withheld, Held, Forwarding, Forwarded, Failed, Dropped, Skipped, Adopted, Settled}
	for seed := int64(1); seed <= 50; seed++ {
		r := rand.New(rand.NewSource(seed))
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		evs := []DSEvent{{ID: "created", Time: start, Action: Created}}
		for i := 0; i < 3000; i++ {
			k := r.Intn(40)
			e := DSEvent{
				ID:          fmt.Sprintf("e%05d", i),
				Time:        start.Add(time.Duration(i+1) * time.Minute),
				Kind:        []string{Submit, Retract}[r.Intn(2)],
				Action:      actions[r.Intn(len(actions))],
				Zone:        fmt.Sprintf("z%d.example", k%7),
				KeyTag:      1000 + k,
				Algorithm:   13,
				Fingerprint: fmt.Sprintf("fp%02d", k),
				Reason:      fmt.Sprintf("reason %d", r.Intn(5)),
			}
			if r.Intn(3) == 0 {
				e.Locator = fmt.Sprintf("loc%02d", k)
			}
			if r.Intn(2) == 0 {
				e.Line = fmt.Sprintf("z.example. %d IN DNSKEY 257 3 13 a2V5%02d", 60*(1+r.Intn(3)), k)
			}
			if r.Intn(50) == 0 {
				e = DSEvent{ID: e.ID, Time: e.Time, Action: Rejected, Line: "garbage"}
			}
			evs = append(evs, e)
		}
		evs = mergeEvents(evs)
		cut := bound(evs, 300, start.Add(24*time.Hour))
		if len(cut) >= len(evs) {
			t.Fatalf("seed %d: bound kept all %d events", seed, len(evs))
		}
		if !sameBook(Book(evs), Book(cut)) {
			t.Fatalf("seed %d: the records decide otherwise after compaction to %d events", seed, len(cut))
		}
		if got := bound(cut, 300, start.Add(24*time.Hour)); len(got) != len(cut) {
			t.Errorf("seed %d: bounding again drops %d more", seed, len(cut)-len(got))
		}
	}
}

// Under the bound, nothing is dropped.
func TestBoundUnderMax(t *testing.T) {
	evs := []DSEvent{{ID: "a", Action: Created}, {ID: "b", Action: Withheld, Kind: Submit, Zone: "x", Fingerprint: "f"}}
	if got := bound(evs, 10, time.Now()); len(got) != 2 {
		t.Errorf("bound dropped %d of 2 events under the bound", 2-len(got))
	}
}

// A key settled for good more than settledFor ago leaves the records; one
// still at the parent, or with a request kept back, never does.
func TestBoundForgetsSettledKeys(t *testing.T) {
	old := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs []DSEvent
	add := func(id, action, zone, fp string) {
		evs = append(evs, DSEvent{ID: id, Time: old.Add(time.Duration(len(evs)) * time.Minute), Kind: Submit, Action: action, Zone: zone, Fingerprint: fp})
	}
	add("a1", Withheld, "gone.example", "fa")
	add("a2", Dropped, "gone.example", "fa")
	add("b1", Forwarded, "live.example", "fb")
	add("c1", Withheld, "kept.example", "fc")
	for i := 0; i < 20; i++ {
		add(fmt.Sprint("n", i), Withheld, "noise.example", "fn")
		add(fmt.Sprint("m", i), Dropped, "noise.example", "fn")
	}
	cut := bound(mergeEvents(evs), 5, old.Add(settledFor+48*time.Hour))
	ids := map[string]bool{}
	for _, e := range cut {
		ids[e.ID] = true
	}
	if ids["a1"] || ids["a2"] || !ids["b1"] || !ids["c1"] {
		t.Errorf("kept %v: want the forwarded DS and the withheld request, not the settled key", ids)
	}
}
