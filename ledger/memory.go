package ledger

import (
	"context"
	"sync"
	"time"
)

// Memory returns a ledger that keeps its records in memory only: for tests
// of the packages that read ceremonies and DS records.
func Memory() *Ledger { return &Ledger{b: &memory{open: map[string]*Ceremony{}}} }

type memory struct {
	mu      sync.Mutex
	open    map[string]*Ceremony
	history []*Ceremony
	ds      []DSEvent
}

func (m *memory) lock(ctx context.Context) (func(), error) { m.mu.Lock(); return m.mu.Unlock, nil }

func (m *memory) loadCeremonies(ctx context.Context) (map[string]*Ceremony, []*Ceremony, error) {
	open := map[string]*Ceremony{}
	for k, v := range m.open {
		open[k] = v
	}
	return open, append([]*Ceremony(nil), m.history...), nil
}

func (m *memory) putOpen(ctx context.Context, next map[string]*Ceremony, c *Ceremony) error {
	m.open = next
	return nil
}

func (m *memory) dropOpen(ctx context.Context, next map[string]*Ceremony, repo string) error {
	m.open = next
	return nil
}

func (m *memory) appendHistory(ctx context.Context, next []*Ceremony, c *Ceremony) error {
	m.history = next
	return nil
}

func (m *memory) loadDS(ctx context.Context) ([]DSEvent, []Refused, error) {
	return mergeEvents(append([]DSEvent(nil), m.ds...)), nil, nil
}

func (m *memory) addDS(ctx context.Context, evs []DSEvent) error {
	m.ds = append(m.ds, evs...)
	return nil
}

func (m *memory) compactDS(ctx context.Context, max int) error {
	m.ds = bound(mergeEvents(m.ds), max, time.Now())
	return nil
}

func (m *memory) close() error { return nil }

func (m *memory) where() string { return "the ledger in memory" }

func (m *memory) lockHolder(ctx context.Context) string { return "" }
