package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
)

// The log in MySQL: keyguard_log, appended in the transaction of the record
// it logs. The append is a compare-and-set on the head: it reads the last
// entry (FOR UPDATE, which orders the writers of one server) and inserts
// the next one under a unique seq and a unique prev. Two writers on two
// Galera nodes that both read the same head both insert the same seq: the
// cluster certifies one and aborts the other (1213), who tries again from
// the new head. Correctness rests on the keys, never on a lock.

// errLogRace is an append that found its place taken: tried again.
var errLogRace = errors.New("another writer appended to the log first")

// appendTx appends recs to the log inside tx, after the last entry, and
// starts the log with its first entry when it is empty.
func (m *mysqlLedger) appendTx(ctx context.Context, tx *sql.Tx, recs []record) error {
	_, err := m.appendTxStored(ctx, tx, recs)
	return err
}

// appendTxStored is appendTx, returning the entries as stored.
func (m *mysqlLedger) appendTxStored(ctx context.Context, tx *sql.Tx, recs []record) ([]Stored, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	var seq uint64
	var hash string
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM keyguard_log ORDER BY seq DESC LIMIT 1 FOR UPDATE`).Scan(&seq, &hash)
	var prev Hash
	switch {
	case errors.Is(err, sql.ErrNoRows):
		g, err := m.genesisTx(ctx, tx)
		if err != nil {
			return nil, err
		}
		recs = append([]record{g}, recs...)
	case err != nil:
		return nil, err
	default:
		if prev, err = ParseHash(hash); err != nil {
			return nil, fmt.Errorf("ledger %s: the log's last entry %d has no hash: run ods-keyguard ledger verify", m.srv.String(), seq)
		}
	}
	added, _, err := entries(recs, seq+1, prev, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	for i, s := range added {
		_, err := tx.ExecContext(ctx, `INSERT INTO keyguard_log (seq, prev, hash, entry) VALUES (?, ?, ?, ?)`,
			seq+1+uint64(i), s.Prev, s.Hash, string(s.Body))
		if mysqlx.Number(err) == mysqlx.ErDupEntry {
			return nil, errLogRace
		}
		if err != nil {
			return nil, err
		}
	}
	return added, nil
}

func (m *mysqlLedger) appendLog(ctx context.Context, recs []record) ([]Stored, error) {
	var added []Stored
	err := m.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		added, err = m.appendTxStored(ctx, tx, recs)
		return err
	})
	return added, err
}

// readLog reads the stored entries from number from to number to (0: the
// end), in order.
func (m *mysqlLedger) readLog(ctx context.Context, from, to uint64) ([]Stored, error) {
	var out []Stored
	if to == 0 {
		to = 1<<63 - 1
	}
	err := m.retry(ctx, func() error {
		out = nil
		rows, err := m.db.QueryContext(ctx, `SELECT prev, hash, entry FROM keyguard_log WHERE seq >= ? AND seq <= ? ORDER BY seq`, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s Stored
			var body string
			if err := rows.Scan(&s.Prev, &s.Hash, &body); err != nil {
				return err
			}
			s.Body = []byte(body)
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

func (m *mysqlLedger) putCheckpoint(ctx context.Context, c Checkpoint) error {
	return m.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT IGNORE INTO keyguard_checkpoint (size, note, host, made) VALUES (?, ?, ?, UTC_TIMESTAMP(6))`,
			c.Size, c.Note, host())
		return err
	})
}

func (m *mysqlLedger) checkpoints(ctx context.Context, latest bool) ([]storedNote, error) {
	var out []storedNote
	q := `SELECT size, note FROM keyguard_checkpoint ORDER BY size`
	if latest {
		q = `SELECT size, note FROM keyguard_checkpoint ORDER BY size DESC LIMIT 1`
	}
	err := m.retry(ctx, func() error {
		out = nil
		rows, err := m.db.QueryContext(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var size uint64
			var note string
			if err := rows.Scan(&size, &note); err != nil {
				return err
			}
			out = append(out, storedNote{Where: fmt.Sprintf("ledger %s table keyguard_checkpoint row %d", m.srv.String(), size), Text: note})
		}
		return rows.Err()
	})
	return out, err
}

// genesisTx is the log's first entry, from the records as tx sees them.
func (m *mysqlLedger) genesisTx(ctx context.Context, tx *sql.Tx) (record, error) {
	p := begunPayload{Origin: m.opts.origin(), Existing: existing{History: []recordSum{}, Open: []recordSum{}, DS: []recordSum{}}}
	for _, q := range []struct {
		query string
		list  *[]recordSum
	}{
		{`SELECT id, repository, sha256 FROM keyguard_history ORDER BY seq`, &p.Existing.History},
		{`SELECT id, repository, sha256 FROM keyguard_open ORDER BY repository`, &p.Existing.Open},
		{`SELECT id, '', sha256 FROM keyguard_ds_event ORDER BY seq`, &p.Existing.DS},
	} {
		rows, err := tx.QueryContext(ctx, q.query)
		if err != nil {
			return record{}, err
		}
		for rows.Next() {
			var r recordSum
			if err := rows.Scan(&r.ID, &r.Repository, &r.SHA256); err != nil {
				rows.Close()
				return record{}, err
			}
			*q.list = append(*q.list, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return record{}, err
		}
	}
	return record{KindBegun, p}, nil
}

// archiveCut is the newest entry written before before, but never the
// newest entry.
func (m *mysqlLedger) archiveCut(ctx context.Context, stored []Stored, before time.Time) (uint64, error) {
	var cut uint64
	for i := 0; i+1 < len(stored); i++ {
		e, err := decodeEntry(stored[i])
		if err != nil {
			return 0, err
		}
		if !e.Time.Before(before) {
			break
		}
		cut = e.Seq
	}
	return cut, nil
}

func (m *mysqlLedger) cutNote() string { return "" }

func (m *mysqlLedger) logStart(ctx context.Context) (uint64, error) {
	var first sql.NullInt64
	err := m.retry(ctx, func() error {
		return m.db.QueryRowContext(ctx, `SELECT min(seq) FROM keyguard_log`).Scan(&first)
	})
	return uint64(first.Int64), err
}

// dropLog deletes the entries, a thousand a transaction: a Galera
// cluster certifies each write set whole, and bounds its size.
func (m *mysqlLedger) dropLog(ctx context.Context, first, through uint64) error {
	for {
		var n int64
		err := m.inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM keyguard_log WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT 1000`, first, through)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil || n == 0 {
			return err
		}
	}
}

// importLog copies a log and its checkpoints as they are (ledger migrate).
func importLog(ctx context.Context, tx *sql.Tx, log []Stored, notes []storedNote) error {
	for _, s := range log {
		// An archived log begins past entry 1: each entry keeps its number.
		e, err := decodeEntry(s)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO keyguard_log (seq, prev, hash, entry) VALUES (?, ?, ?, ?)`,
			e.Seq, s.Prev, s.Hash, string(s.Body)); err != nil {
			return err
		}
	}
	for _, n := range notes {
		if n.Err != nil {
			return n.Err
		}
		_, size, _, err := parseCheckpointText(noteBody(n.Text))
		if err != nil {
			return fmt.Errorf("%s: %w", n.Where, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT IGNORE INTO keyguard_checkpoint (size, note, host, made) VALUES (?, ?, ?, UTC_TIMESTAMP(6))`,
			size, n.Text, host()); err != nil {
			return err
		}
	}
	return nil
}
