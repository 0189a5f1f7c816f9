package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
)

// Status is what ledger status reports: where the records are, what the
// server is, and what that guarantees.
type Status struct {
	Backend string `json:"backend"` // files or mysql
	Where   string `json:"where"`
	// Server is the MySQL ledger's server; nil for state_dir.
	Server   *ServerInfo `json:"server"`
	Topology string      `json:"topology"`
	// SchemaVersion is the MySQL ledger's schema version row; nil when
	// there is none (run ledger init) or for state_dir.
	SchemaVersion *int `json:"schema_version"`
	Writable      bool `json:"writable"`
	OpenCount     int  `json:"open_count"`
	HistoryCount  int  `json:"history_count"`
	DSEventCount  int  `json:"ds_event_count"`
	// Log is the chained log: its size, head and newest checkpoint.
	Log        LogStatus `json:"log"`
	LockHolder string    `json:"lock_holder"` // "" when nobody holds the writers' lock (on this node)
	Guarantee  string    `json:"guarantee"`
	// Problems is what stands in the way of writers: no tables, an old
	// schema, a read-only server, a Galera node out of sync.
	Problems []string `json:"problems"`
}

// Status reports the ledger. Open it with Options.Inspect: a ledger that
// writers would refuse (no tables, a read-only server) is reported, not
// refused.
func (l *Ledger) Status(ctx context.Context) (*Status, error) {
	st := &Status{Where: l.Where(), Problems: []string{}}
	switch b := l.b.(type) {
	case *files:
		st.Backend, st.Writable = "files", true
		st.Topology = "one host: state_dir"
		st.Guarantee = "one host: the writers' flock serialises every change of a ceremony"
	case *mysqlLedger:
		st.Backend = "mysql"
		info := b.info
		st.Server, st.Topology = &info, info.Topology()
		st.Writable = info.ReadOnly == ""
		switch {
		case info.ReadOnly != "":
			st.Guarantee = "none for writers: a read-only server (a replica) serves readers (check) only; writers refuse it"
			st.Problems = append(st.Problems, (&ReadOnlyServerError{b.srv.String(), info.ReadOnly}).Error())
		case info.Galera:
			st.Guarantee = "writes to any node: every ceremony step is a compare-and-set that Galera certifies cluster-wide, so exactly one host commits a ceremony; reads wait for the cluster (wsrep_sync_wait = 1); GET_LOCK is node-local, a courtesy only"
			if info.NodeState != "Synced" {
				st.Problems = append(st.Problems, fmt.Sprintf("this Galera node is %s, not Synced: it may refuse or delay writes", info.NodeState))
			}
		default:
			st.Guarantee = "one server (or the primary behind an address that follows it): every ceremony step is a compare-and-set, so exactly one host commits a ceremony; the lock makes one host wait for the other; after a fail-over, what the old primary had not sent to the replica is lost"
		}
		var v sql.NullInt64
		err := b.db.QueryRowContext(ctx, `SELECT max(version) FROM keyguard_schema`).Scan(&v)
		var ni *NotInitializedError
		var ferr error
		if err != nil {
			ferr = b.fail(ctx, err, 0)
		}
		switch {
		case err == nil && v.Valid:
			n := int(v.Int64)
			st.SchemaVersion = &n
			if n != mysqlSchemaVersion {
				st.Problems = append(st.Problems, (&OldSchemaError{b.srv.String(), n, mysqlSchemaVersion}).Error())
				return st, nil
			}
		case err == nil || errors.As(ferr, &ni):
			st.Problems = append(st.Problems, (&NotInitializedError{b.srv.String()}).Error())
			return st, nil
		default:
			return nil, ferr
		}
	}
	open, _, history, err := l.b.loadCeremonies(ctx)
	if err != nil {
		return nil, err
	}
	evs, _, err := l.b.loadDS(ctx)
	if err != nil {
		return nil, err
	}
	st.OpenCount, st.HistoryCount, st.DSEventCount = len(open), len(history), len(evs)
	st.Log = l.logStatus(ctx)
	st.LockHolder = l.LockHolder(ctx)
	return st, nil
}

// LogStatus is the log as ledger status reports it: how many entries, the
// head's short form, and the size the newest stored checkpoint signed
// (nil when none is stored). Error says why the head could not be read:
// ledger verify says more.
type LogStatus struct {
	Entries    uint64  `json:"entries"`
	Head       string  `json:"head"`
	Checkpoint *uint64 `json:"checkpoint"`
	Error      string  `json:"error,omitempty"`
}

// logStatus reads the head (walking only the entries since the newest
// checkpoint) and the newest checkpoint's size.
func (l *Ledger) logStatus(ctx context.Context) LogStatus {
	var ls LogStatus
	h, err := l.Head(ctx)
	if err != nil {
		ls.Error = human.OneLine(err.Error())
		return ls
	}
	ls.Entries = h.Entries
	if h.Entries > 0 {
		ls.Head = h.Short()
	}
	if notes, err := l.b.checkpoints(ctx, true); err == nil && len(notes) == 1 && notes[0].Err == nil {
		if _, n, _, err := parseCheckpointText(noteBody(notes[0].Text)); err == nil {
			ls.Checkpoint = &n
		}
	}
	return ls
}

// text is the log's line of ledger status.
func (ls LogStatus) text() string {
	switch {
	case ls.Error != "":
		return "log: cannot read its head: " + ls.Error
	case ls.Entries == 0:
		return "log: empty (the first record starts it)"
	}
	signed := "no checkpoint stored"
	if ls.Checkpoint != nil {
		signed = fmt.Sprintf("the newest checkpoint covers %s", human.Count(int(*ls.Checkpoint), "entry", "entries"))
		if after := ls.Entries - *ls.Checkpoint; *ls.Checkpoint <= ls.Entries && after > 0 {
			signed += fmt.Sprintf(", %s after it", human.Count(int(after), "entry", "entries"))
		}
	}
	return fmt.Sprintf("log: %s, head %s; %s", human.Count(int(ls.Entries), "entry", "entries"), ls.Head, signed)
}

// WriteText prints the status for the operator.
func (st *Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "ledger: %s\n", st.Where)
	if st.Server != nil {
		rw := "writable"
		if !st.Writable {
			rw = "read-only: " + st.Server.ReadOnly
		}
		fmt.Fprintf(w, "server: %s, %s, %s\n", st.Server.Version, st.Topology, rw)
		if st.SchemaVersion != nil {
			fmt.Fprintf(w, "schema: version %d\n", *st.SchemaVersion)
		} else {
			fmt.Fprintf(w, "schema: none\n")
		}
	}
	fmt.Fprintf(w, "records: %s, %d in the history, %s\n", human.Count(st.OpenCount, "open ceremony"), st.HistoryCount, human.Count(st.DSEventCount, "DS record"))
	fmt.Fprintln(w, st.Log.text())
	if st.LockHolder != "" {
		fmt.Fprintf(w, "lock: held by %s\n", st.LockHolder)
	} else {
		fmt.Fprintf(w, "lock: free\n")
	}
	fmt.Fprintf(w, "guarantee: %s\n", st.Guarantee)
	for _, p := range st.Problems {
		fmt.Fprintf(w, "PROBLEM %s\n", p)
	}
}
