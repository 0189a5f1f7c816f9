package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// migratedFile, in a state_dir whose records went to a MySQL ledger, says
// where and when; the files backend refuses that state_dir from then on, so
// no host goes on writing records the others cannot see.
const (
	migratedFile   = "MIGRATED"
	migratedFormat = "ods-keyguard/migrated/1"
)

type migrated struct {
	To   string    `json:"to"` // mysql://user@host:port/db, never a password
	At   time.Time `json:"at"`
	Host string    `json:"host"`
}

// MigratedError is a state_dir whose records live in a MySQL ledger now.
type MigratedError struct {
	Dir, To string
	At      time.Time
}

func (e *MigratedError) Error() string {
	return fmt.Sprintf("state_dir %s: its records were moved to the ledger %s on %s: set [ledger] backend = \"mysql\"",
		e.Dir, e.To, e.At.UTC().Format(time.RFC3339))
}

// checkMigrated refuses a state_dir that was migrated.
func checkMigrated(d *statedir.Dir) error {
	var m migrated
	if err := load(d, migratedFile, migratedFormat, &m); err != nil {
		return err
	}
	if m.To != "" {
		return &MigratedError{Dir: d.Path(), To: m.To, At: m.At}
	}
	return nil
}

// MigrateReport says what a migration copied.
type MigrateReport struct {
	From, To      string
	Open, History int
	Events        int
	// Already: the database held exactly these records (a migration run
	// again after it had committed): nothing was copied.
	Already bool
}

// MigrateTo opens the state_dir of o (migrated or not) and the MySQL
// ledger on srv, and migrates the one into the other.
func MigrateTo(ctx context.Context, o Options, srv *mysqlx.Server) (*MigrateReport, error) {
	from := o
	from.MySQL, from.Migrating = nil, true
	src, err := New(ctx, from)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	to := o
	to.MySQL, to.Create = srv, true // ledger migrate makes the tables
	dst, err := New(ctx, to)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	return Migrate(ctx, src, dst)
}

// WriteText says what the migration copied and what the operator does next.
func (r *MigrateReport) WriteText(w io.Writer) {
	if r.Already {
		fmt.Fprintf(w, "ledger migrate: %s already holds exactly the records of %s (%d open, %s, %s): nothing copied\n",
			r.To, r.From, r.Open, human.Count(r.History, "ended ceremony"), human.Count(r.Events, "DS record"))
	} else {
		fmt.Fprintf(w, "ledger migrate: copied %d open and %s and %s from %s to %s, each read back and compared\n",
			r.Open, human.Count(r.History, "ended ceremony"), human.Count(r.Events, "DS record"), r.From, r.To)
	}
	fmt.Fprintf(w, "state_dir %s is retired: set [ledger] backend = \"mysql\" on every host\n", r.From)
}

// Migrate copies the ledger in state_dir (from) into the empty MySQL ledger
// to, under both writers' locks, in one transaction; reads it back and
// compares every record; then marks state_dir as migrated. A crash before
// the commit leaves the database empty, after it the same records: run it
// again. A database that holds other records is refused.
func Migrate(ctx context.Context, from, to *Ledger) (*MigrateReport, error) {
	src, ok := from.b.(*files)
	if !ok || src.d == nil {
		return nil, errors.New("ledger migrate: the source must be an existing state_dir")
	}
	dst, ok := to.b.(*mysqlLedger)
	if !ok {
		return nil, errors.New("ledger migrate: the target must be a MySQL ledger")
	}
	rep := &MigrateReport{From: src.d.Path(), To: dst.srv.String()}
	unlockSrc, err := src.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlockSrc()
	unlockDst, err := dst.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlockDst()
	open, _, history, err := src.loadCeremonies(ctx)
	if err != nil {
		return nil, err
	}
	evs, _, err := src.loadDS(ctx)
	if err != nil {
		return nil, err
	}
	log, err := src.readLog(ctx, 1, 0)
	if err != nil {
		return nil, err
	}
	notes, err := src.checkpoints(ctx, false)
	if err != nil {
		return nil, err
	}
	pubs, err := src.loadPublish(ctx, "")
	if err != nil {
		return nil, err
	}
	rep.Open, rep.History, rep.Events = len(open), len(history), len(evs)
	o, h, e, err := dst.counts(ctx)
	if err != nil {
		return nil, err
	}
	if o+h+e > 0 {
		if err := same(ctx, dst, open, history, evs); err != nil {
			return nil, fmt.Errorf("ledger migrate: %s already holds %s, %d in the history and %s, not these (%v): migrate only into an empty ledger",
				rep.To, human.Count(o, "open ceremony"), h, human.Count(e, "DS record"), err)
		}
		rep.Already = true
	} else {
		if err := dst.importAll(ctx, open, history, evs, log, notes, pubs); err != nil {
			return nil, err
		}
		if err := same(ctx, dst, open, history, evs); err != nil {
			return nil, fmt.Errorf("ledger migrate: %s does not read back what was written: %v", rep.To, err)
		}
	}
	b, err := encode(migratedFormat, migrated{To: rep.To, At: time.Now().UTC(), Host: host()})
	if err != nil {
		return nil, err
	}
	if err := src.d.WriteAtomic(migratedFile, b, statedir.FileMode); err != nil {
		return nil, fileError(err)
	}
	return rep, nil
}

// same compares what dst holds with the records, record by record.
func same(ctx context.Context, dst *mysqlLedger, open map[string]*Ceremony, history []*Ceremony, evs []DSEvent) error {
	gotOpen, _, gotHistory, err := dst.loadCeremonies(ctx)
	if err != nil {
		return err
	}
	gotEvs, err := dst.events(ctx)
	if err != nil {
		return err
	}
	if len(gotOpen) != len(open) || len(gotHistory) != len(history) || len(gotEvs) != len(evs) {
		return fmt.Errorf("records %d/%d/%d, want %d/%d/%d", len(gotOpen), len(gotHistory), len(gotEvs), len(open), len(history), len(evs))
	}
	for repo, c := range open {
		if !equalJSON(gotOpen[repo], c) {
			return fmt.Errorf("open ceremony of %s differs", repo)
		}
	}
	for i := range history {
		if !equalJSON(gotHistory[i], history[i]) {
			return fmt.Errorf("ceremony %s differs", history[i].ID)
		}
	}
	for i := range evs {
		if !equalJSON(gotEvs[i], evs[i]) {
			return fmt.Errorf("DS record %s differs", evs[i].ID)
		}
	}
	return nil
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Init makes the tables of a MySQL ledger, and its schema version row (a
// files ledger needs nothing): what ledger init does, once. Open the ledger
// with Options.Create for it.
func (l *Ledger) Init(ctx context.Context) error {
	if m, ok := l.b.(*mysqlLedger); ok {
		return m.create(ctx)
	}
	return nil
}
