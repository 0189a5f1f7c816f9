package backup

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// What the backup commands print besides their messages: the JSON
// documents described by schema/backup-*.json, and the history.

// StepDoc is the JSON document of backup prepare, done or rollback: the
// ceremonies the step touched, what it told the operator (one message a
// line of text), and its error, on one line, or null.
func StepDoc(step string, cs []*ledger.Ceremony, messages string, err error, seal Seal) any {
	doc := struct {
		OK         bool               `json:"ok"`
		Error      *string            `json:"error"`
		Ceremonies []*ledger.Ceremony `json:"ceremonies"`
		Messages   []string           `json:"messages"`
		Checkpoint *ledger.Checkpoint `json:"checkpoint"`
		CPError    *string            `json:"checkpoint_error"`
		Ledger     *ledger.Head       `json:"ledger"`
	}{OK: err == nil, Ceremonies: nonNil(cs), Messages: []string{},
		Checkpoint: seal.Checkpoint, Ledger: seal.Head}
	if seal.Err != nil {
		msg := seal.Err.Error()
		doc.CPError = &msg
	}
	for _, l := range strings.Split(messages, "\n") {
		if l != "" {
			doc.Messages = append(doc.Messages, l)
		}
	}
	if err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		doc.Error = &msg
	}
	return jsondoc.New("backup-"+step, doc)
}

// HistoryDoc is backup history's JSON document.
func HistoryDoc(store *ledger.Store) any {
	return jsondoc.New("backup-history", struct {
		Ceremonies []*ledger.Ceremony `json:"ceremonies"`
		Open       []*ledger.Ceremony `json:"open"`
	}{nonNil(store.History()), nonNil(openOf(store))})
}

// WriteHistory prints the ended ceremonies, newest first, then the open
// ones: ID REPOSITORY STATUS PREPARED ENDED KEYS BACKUP.
func WriteHistory(w io.Writer, store *ledger.Store) error {
	hist, open := store.History(), openOf(store)
	if len(hist)+len(open) == 0 {
		_, err := fmt.Fprintln(w, "no backup ceremony yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREPOSITORY\tSTATUS\tPREPARED\tENDED\tKEYS\tBACKUP")
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(human.Minute)
	}
	for _, c := range append(hist, open...) {
		backup := "-"
		switch {
		case c.Status != ledger.Confirmed:
		case c.Verified():
			backup = "verified:" + c.BackupToken.Name
		default:
			backup = "attested"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.ID, c.Repository, c.Status, stamp(c.Prepared), stamp(c.Ended), len(c.Keys), backup)
	}
	return tw.Flush()
}

func openOf(store *ledger.Store) []*ledger.Ceremony {
	var open []*ledger.Ceremony
	for _, r := range store.OpenRepositories() {
		open = append(open, store.Open(r))
	}
	return open
}

func nonNil(cs []*ledger.Ceremony) []*ledger.Ceremony {
	if cs == nil {
		return []*ledger.Ceremony{}
	}
	return cs
}

// Seal is what pins a step on paper: the log's head after it, and the
// checkpoint signed after it (or why none was).
type Seal struct {
	Head       *ledger.Head
	Checkpoint *ledger.Checkpoint
	Err        error
}

// SealOf reads the seal of the step l just recorded: nil fields where
// nothing was recorded or the log cannot be read.
func SealOf(ctx context.Context, l *ledger.Ledger) Seal {
	var s Seal
	if h, err := l.Head(ctx); err == nil && h.Entries > 0 {
		s.Head = &h
	}
	s.Checkpoint, s.Err = l.LastCheckpoint()
	if s.Checkpoint != nil && s.Head != nil && s.Checkpoint.Size < s.Head.Entries {
		s.Checkpoint = nil // signed before the step's last write
	}
	return s
}

// WriteSeal prints the seal: the short form to read aloud and write on the
// ceremony form, and the signed checkpoint.
func WriteSeal(w io.Writer, s Seal) {
	switch {
	case s.Checkpoint != nil:
		fmt.Fprintf(w, "checkpoint, for the ceremony form (read it aloud): %s\n", s.Checkpoint.Short())
		for _, line := range strings.Split(strings.TrimRight(s.Checkpoint.Note, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	case s.Head != nil:
		fmt.Fprintf(w, "ledger head, for the ceremony form (read it aloud): %s; not signed: %v\n", s.Head.Short(), s.Err)
	}
}
