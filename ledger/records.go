package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
)

// The payloads of the entries the ledger writes itself.

// ceremonyPayload is a KindCeremony entry: the step (the status the
// ceremony has after it) and the ceremony's whole record, byte for byte
// what the working records hold (so their checksums compare).
type ceremonyPayload struct {
	Step     string          `json:"step"`
	Ceremony json.RawMessage `json:"ceremony"`
}

// ceremonyRecord records the ceremony doc (seal's) as a step.
func ceremonyRecord(doc string) record {
	var c struct {
		Status string `json:"status"`
	}
	json.Unmarshal([]byte(doc), &c)
	return record{KindCeremony, ceremonyPayload{Step: c.Status, Ceremony: json.RawMessage(doc)}}
}

type droppedPayload struct {
	Repository string `json:"repository"`
	ID         string `json:"id"`
}

func droppedRecord(repo, id string) record {
	return record{KindCeremonyDropped, droppedPayload{repo, id}}
}

// dsRecord records a DS event, byte for byte what the working records hold.
func dsRecord(e DSEvent) (record, error) {
	doc, _, err := seal(e)
	if err != nil {
		return record{}, err
	}
	return record{KindDS, json.RawMessage(doc)}, nil
}

// publishRecord records a decision of the publish gate, byte for byte
// what the working records hold.
func publishRecord(p PublishRecord) (record, error) {
	doc, _, err := seal(p)
	if err != nil {
		return record{}, err
	}
	return record{KindPublish, json.RawMessage(doc)}, nil
}

// publishLogRecords are the log's records of recs, and of those the bound
// drops (dropped, when there are any).
func publishLogRecords(recs []PublishRecord, dropped []string) ([]record, error) {
	out := make([]record, 0, len(recs)+1)
	for _, p := range recs {
		r, err := publishRecord(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(dropped) > 0 {
		out = append(out, record{KindPublishDropped, compactedRecord{Dropped: dropped}})
	}
	return out, nil
}

// compactedRecord names the DS events compaction dropped from the working
// records: their entries stay in the log.
type compactedRecord struct {
	Dropped []string `json:"dropped"`
}

// droppedIDs lists the ids of all that kept does not hold.
func droppedIDs(all, kept []DSEvent) []string {
	in := map[string]bool{}
	for _, e := range kept {
		in[e.ID] = true
	}
	var out []string
	for _, e := range all {
		if !in[e.ID] {
			out = append(out, e.ID)
		}
	}
	return out
}

// begunPayload is the log's first entry: its origin (the first line of
// every checkpoint), and the checksum of each record written before the
// log existed, so that those are covered too.
type begunPayload struct {
	Origin   string   `json:"origin"`
	Existing existing `json:"existing"`
}

type existing struct {
	History []recordSum `json:"history"`
	Open    []recordSum `json:"open"`
	DS      []recordSum `json:"ds"`
}

// recordSum is a record's identity and SHA-256.
type recordSum struct {
	ID         string `json:"id"`
	Repository string `json:"repository,omitempty"`
	SHA256     string `json:"sha256"`
}

func begunRecord(o Options, open map[string]*Ceremony, history []*Ceremony, evs []DSEvent) (record, error) {
	p := begunPayload{Origin: o.origin(), Existing: existing{History: []recordSum{}, Open: []recordSum{}, DS: []recordSum{}}}
	for _, c := range history {
		_, sum, err := seal(c)
		if err != nil {
			return record{}, err
		}
		p.Existing.History = append(p.Existing.History, recordSum{ID: c.ID, Repository: c.Repository, SHA256: sum})
	}
	var repos []string
	for r := range open {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	for _, r := range repos {
		_, sum, err := seal(open[r])
		if err != nil {
			return record{}, err
		}
		p.Existing.Open = append(p.Existing.Open, recordSum{ID: open[r].ID, Repository: r, SHA256: sum})
	}
	for _, e := range evs {
		_, sum, err := seal(e)
		if err != nil {
			return record{}, err
		}
		p.Existing.DS = append(p.Existing.DS, recordSum{ID: e.ID, SHA256: sum})
	}
	return record{KindBegun, p}, nil
}

// origin is the log's name in its checkpoints: Options.Origin, else this
// host and state_dir, or the ledger database's address. Fixed in the
// log's first entry for the log's life.
func (o Options) origin() string {
	if o.Origin != "" {
		return o.Origin
	}
	if o.MySQL != nil {
		return strings.TrimPrefix(o.MySQL.String(), "mysql://") + "/ods-keyguard"
	}
	return host() + o.Dir + "/ods-keyguard"
}

// sumOf is the SHA-256 of a record's JSON as stored.
func sumOf(raw []byte) string {
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:])
}
