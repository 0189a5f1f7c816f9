package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"time"
)

// Pending is a DS submission (or retraction) that the hook did not pass on:
// withheld for want of a verified backup, or whose forward failed.
type Pending struct {
	ID       string    `json:"id"` // stable for the same kind and line
	Kind     string    `json:"kind"`
	Zone     string    `json:"zone,omitempty"`
	KeyTag   int       `json:"keytag,omitempty"`
	Locator  string    `json:"locator,omitempty"`
	Line     string    `json:"line"`
	Received time.Time `json:"received"`
	Updated  time.Time `json:"updated"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
}

// PendingID names a submission by what it is, so the same one twice is one.
func PendingID(kind, line string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + line))
	return hex.EncodeToString(sum[:8])
}

const pendingFormat = "ods-keyguard/pending/1"

func pendingPath(dir string) string { return filepath.Join(dir, "pending.json") }

// LoadPending reads the withheld submissions, oldest first.
func LoadPending(dir string) ([]Pending, error) {
	var p []Pending
	if err := load(pendingPath(dir), pendingFormat, &p); err != nil {
		return nil, err
	}
	return p, nil
}

// SavePending replaces the list. Call it under the state lock.
func SavePending(dir string, p []Pending) error {
	if p == nil {
		p = []Pending{}
	}
	return store(pendingPath(dir), pendingFormat, p)
}

// AddPending records p, or updates the entry with the same ID.
func AddPending(list []Pending, p Pending) []Pending {
	for i := range list {
		if list[i].ID == p.ID {
			p.Received = list[i].Received
			p.Attempts = list[i].Attempts + p.Attempts
			list[i] = p
			return list
		}
	}
	return append(list, p)
}
