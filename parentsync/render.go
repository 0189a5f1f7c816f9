package parentsync

import (
	"bufio"
	"fmt"
	"io"

	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
)

// Doc is parent sync's JSON document (schema/parent-sync.json).
func Doc(r *Report) any {
	return jsondoc.New("parent-sync", r)
}

// WriteText prints one line per key, then what each server served.
func WriteText(out io.Writer, r *Report) error {
	w := bufio.NewWriter(out)
	if len(r.Items) == 0 {
		fmt.Fprintln(w, "nothing to tell: the enforcer waits on no DS (none submitted or retracted)")
	}
	for _, it := range r.Items {
		verb := it.Action
		switch {
		case it.Told:
			verb = "told " + it.Action
		case r.DryRun && (it.Action == ActSeen || it.Action == ActGone):
			verb = "would tell " + it.Action
		case it.Action == ActHeld:
			verb = "held by ods-keyguard"
		}
		fmt.Fprintf(w, "zone %s %s %d (key %s, DS %s): %s: %s\n", it.Zone, it.Role, it.KeyTag, it.Locator, it.EnforcerDS, verb, it.Reason)
		for _, s := range it.Servers {
			switch {
			case s.Error != "":
				fmt.Fprintf(w, "  %s: not read: %s\n", s.Server, s.Error)
			case len(s.DS) == 0:
				fmt.Fprintf(w, "  %s: no DS\n", s.Server)
			default:
				for _, d := range s.DS {
					fmt.Fprintf(w, "  %s: DS %s\n", s.Server, d)
				}
			}
		}
	}
	return w.Flush()
}
