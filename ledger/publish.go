package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
	"github.com/ods-keyguard/ods-keyguard/internal/statedir"
)

// The publish gate's records: what it decided about each version of a
// signed zone that the signer wrote, and what operators did to it. One
// writer, AddPublish; the gate's own state (what is served, what is held)
// lives in state_dir/publish and is not a record. Every record is an entry
// of the log too (KindPublish), written first (in the same transaction on
// MySQL); the working records keep the newest 1,000 of each zone, and
// what the bound drops is named by a KindPublishDropped entry, so that
// ledger verify holds the two against each other both ways.

// What the gate did with a version: the actions of publish records.
const (
	PublishPublished  = "published"  // installed where the name servers read, reloaded
	PublishHeld       = "held"       // kept back: a key that signed it has no verified backup (rule 1)
	PublishRefused    = "refused"    // never published: it fails validation, or the step from the served version is unsafe
	PublishDeadline   = "deadline"   // a held version published at its deadline, rule 1 still broken
	PublishReported   = "reported"   // report mode: published, and what enforce mode would have done is the reason
	PublishSuperseded = "superseded" // dropped: a newer version was published, held or pending
	PublishStale      = "stale"      // dropped: its serial is not newer than the served one's
	PublishFailed     = "failed"     // could not install, read the file or reload: the served version stays
	PublishTimeout    = "timeout"    // the run's bound passed: the served version stays
	PublishReloaded   = "reloaded"   // the reload command, which had failed after an install, succeeded
	PublishCovered    = "covered"    // the keys of the served version, published without a backup, are backed up now
	PublishBypass     = "bypass"     // an operator turned the gate off for a zone (or every zone)
	PublishBypassEnd  = "bypass-end" // ... and on again
)

// PublishKey is a key that made signatures in a version.
type PublishKey struct {
	KeyTag    int    `json:"keytag"`
	Algorithm int    `json:"algorithm"`
	Locator   string `json:"locator,omitempty"` // the enforcer's key, when one matched
	BackedUp  bool   `json:"backed_up"`
	Reason    string `json:"reason,omitempty"` // why it does not count as backed up
}

// PublishRecord is one decision of the publish gate about one version of a
// zone, or one act of an operator on the gate.
type PublishRecord struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Host   string    `json:"host,omitempty"`
	Zone   string    `json:"zone"`
	Action string    `json:"action"`
	// Serial and SHA256 name the version (none for a bypass).
	Serial uint32       `json:"serial,omitempty"`
	SHA256 string       `json:"sha256,omitempty"`
	Keys   []PublishKey `json:"keys,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Findings are the review's first findings, one line each.
	Findings []string   `json:"findings,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
	Mode     string     `json:"mode,omitempty"` // enforce or report
	By       string     `json:"by"`             // signer, release, backup done, or the operator
}

// maxPublishRecords bounds the records kept per zone: the newest are kept
// (syslog has every decision too).
const maxPublishRecords = 1000

// AddPublish records what the gate decided about a zone, or what an
// operator did to it: the gate's one record writer, into the log and the
// working records. Records of one zone are kept in order; the oldest
// beyond 1,000 per zone leave the working records (not the log).
//
// No checkpoint is signed here, even with a key: the gate runs on the
// signer's path for every version of every zone, and a signature (on a
// token, a login) each time would slow every zone's publication and store
// a checkpoint per decision. ledger checkpoint from cron signs them, as it
// signs the hooks' records.
func (l *Ledger) AddPublish(ctx context.Context, recs ...PublishRecord) error {
	byZone := map[string][]PublishRecord{}
	var zones []string
	for _, r := range recs {
		stamp(&r.ID, &r.Time, &r.Host)
		z := strings.ToLower(strings.TrimSuffix(r.Zone, "."))
		if _, ok := byZone[z]; !ok {
			zones = append(zones, z)
		}
		byZone[z] = append(byZone[z], r)
	}
	for _, z := range zones {
		if err := l.b.addPublish(ctx, z, byZone[z]); err != nil {
			return err
		}
	}
	return nil
}

// Publishes reads the publish records of zone (every zone when ""),
// oldest first.
func (l *Ledger) Publishes(ctx context.Context, zone string) ([]PublishRecord, error) {
	recs, err := l.b.loadPublish(ctx, strings.ToLower(strings.TrimSuffix(zone, ".")))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Time.Equal(recs[j].Time) {
			return recs[i].Time.Before(recs[j].Time)
		}
		return recs[i].ID < recs[j].ID
	})
	return recs, nil
}

// In state_dir: publish-records/ZONE.json, one file per zone (its name
// through statedir.SafeName), rewritten atomically under
// publish-records/ZONE.lock.

const (
	publishDir    = "publish-records"
	publishFormat = "ods-keyguard/publish-records/1"
	// maxPublishFile caps one zone's file: 1,000 records and their findings.
	maxPublishFile = 16 << 20
)

func (f *files) addPublish(ctx context.Context, zone string, recs []PublishRecord) error {
	if f.d == nil {
		return fmt.Errorf("state_dir %s: does not exist", f.opts.Dir)
	}
	d, err := f.d.Sub(publishDir, true)
	if err != nil {
		return err
	}
	defer d.Close()
	name := statedir.SafeName(zone)
	wait := f.opts.LockWait
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	unlock, err := d.Flock(ctx, name+".lock", wait)
	if err != nil {
		return err
	}
	defer unlock()
	var all []PublishRecord
	if err := loadMax(d, name+".json", publishFormat, &all, maxPublishFile); err != nil {
		return err
	}
	all = append(all, recs...)
	var dropped []string
	if len(all) > maxPublishRecords {
		for _, r := range all[:len(all)-maxPublishRecords] {
			dropped = append(dropped, r.ID)
		}
		all = all[len(all)-maxPublishRecords:]
	}
	// The log first: a crash before the records are written leaves an
	// entry ledger verify names ("run it again" holds for the gate too:
	// the next run records its decision again).
	logged, err := publishLogRecords(recs, dropped)
	if err != nil {
		return err
	}
	if _, err := f.appendLog(ctx, logged); err != nil {
		return err
	}
	return store(d, name+".json", publishFormat, all)
}

func (f *files) loadPublish(ctx context.Context, zone string) ([]PublishRecord, error) {
	if f.d == nil {
		return nil, nil
	}
	d, err := f.d.Sub(publishDir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing recorded yet
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names := []string{statedir.SafeName(zone) + ".json"}
	if zone == "" {
		if names, err = d.List(".json"); err != nil {
			return nil, err
		}
	}
	var out []PublishRecord
	for _, n := range names {
		var recs []PublishRecord
		if err := loadMax(d, n, publishFormat, &recs, maxPublishFile); err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// In MySQL: keyguard_publish, one row per record, made by ledger init
// (which a ledger made before the gate runs once more to add it).

func (m *mysqlLedger) addPublish(ctx context.Context, zone string, recs []PublishRecord) error {
	err := m.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertPublish(ctx, tx, recs); err != nil {
			return err
		}
		// The bound: the newest maxPublishRecords of the zone stay; the log
		// names the ones that go.
		var dropped []string
		var last sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM keyguard_publish WHERE zone = ? ORDER BY seq DESC LIMIT 1 OFFSET ?`,
			zone, maxPublishRecords).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows) || err == nil && !last.Valid:
		case err != nil:
			return err
		default:
			rows, err := tx.QueryContext(ctx, `SELECT id FROM keyguard_publish WHERE zone = ? AND seq <= ? ORDER BY seq`, zone, last.Int64)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				dropped = append(dropped, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM keyguard_publish WHERE zone = ? AND seq <= ?`, zone, last.Int64); err != nil {
				return err
			}
		}
		logged, err := publishLogRecords(recs, dropped)
		if err != nil {
			return err
		}
		return m.appendTx(ctx, tx, logged)
	})
	return m.noPublishTable(err)
}

// insertPublish adds records, each once (by id).
func insertPublish(ctx context.Context, tx *sql.Tx, recs []PublishRecord) error {
	for _, r := range recs {
		doc, sum, err := seal(r)
		if err != nil {
			return err
		}
		zone := strings.ToLower(strings.TrimSuffix(r.Zone, "."))
		if _, err := tx.ExecContext(ctx, `INSERT IGNORE INTO keyguard_publish (id, zone, doc, sha256) VALUES (?, ?, ?, ?)`,
			r.ID, zone, doc, sum); err != nil {
			return err
		}
	}
	return nil
}

func (m *mysqlLedger) loadPublish(ctx context.Context, zone string) ([]PublishRecord, error) {
	var out []PublishRecord
	err := m.retry(ctx, func() error {
		out = nil
		q, args := `SELECT id, doc, sha256 FROM keyguard_publish ORDER BY seq`, []any(nil)
		if zone != "" {
			q, args = `SELECT id, doc, sha256 FROM keyguard_publish WHERE zone = ? ORDER BY seq`, []any{zone}
		}
		rows, err := m.db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, doc, sum string
			if err := rows.Scan(&id, &doc, &sum); err != nil {
				return err
			}
			var r PublishRecord
			if err := m.unseal("keyguard_publish", id, doc, sum, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, m.noPublishTable(err)
}

// noPublishTable says what to do about a ledger made before the gate: its
// table comes with ledger init. (The schema version row was checked when
// the ledger was opened: a missing table here is that one.)
func (m *mysqlLedger) noPublishTable(err error) error {
	var ni *NotInitializedError
	if mysqlx.Number(err) == mysqlx.ErNoSuchTable || errors.As(err, &ni) {
		return m.errorf("no table for the publish gate's records (keyguard_publish): run ods-keyguard ledger init once (it adds it)")
	}
	return err
}
