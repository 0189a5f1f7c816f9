package backup

import (
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
func StepDoc(step string, cs []*ledger.Ceremony, messages string, err error) any {
	doc := struct {
		OK         bool               `json:"ok"`
		Error      *string            `json:"error"`
		Ceremonies []*ledger.Ceremony `json:"ceremonies"`
		Messages   []string           `json:"messages"`
	}{OK: err == nil, Ceremonies: nonNil(cs), Messages: []string{}}
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
