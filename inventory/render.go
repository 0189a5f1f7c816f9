package inventory

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
)

// What inventory, verify and status print: text for the operator, and the
// JSON documents described by schema/inventory.json, verify.json and
// status.json.

// WriteInventory prints one row per key and per orphan, with a column per
// token.
func (r *Report) WriteInventory(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"LOCATOR", "REPOSITORY", "POLICY", "ROLE", "USE", "BACKUP", "CEREMONY", "ZONES"}
	for _, t := range r.Tokens {
		head = append(head, t.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range r.Rows {
		cells := []string{row.Locator, row.Repository, dash(row.Policy), row.Role, row.Use, row.Backup, dash(row.CoveredBy), dash(strings.Join(row.Zones, ","))}
		for _, t := range r.Tokens {
			p, ok := row.Present[t.Name]
			if !ok {
				p = "-"
			}
			cells = append(cells, p)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, o := range r.Orphans {
		var repo string
		for _, t := range r.Tokens {
			if t.Name == o.Token {
				repo = t.Repository
			}
		}
		cells := []string{o.ID, repo, "-", "-", "orphan", "-", "-", "-"}
		for _, t := range r.Tokens {
			p := "-"
			if t.Name == o.Token {
				p = Present
			}
			cells = append(cells, p)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// InventoryDoc is inventory's JSON document.
func (r *Report) InventoryDoc() any {
	return jsondoc.New("inventory", struct {
		Tokens []Token  `json:"tokens"`
		Keys   []Row    `json:"keys"`
		Orphan []Orphan `json:"orphans"`
	}{r.Tokens, r.Rows, r.Orphans})
}

// WriteVerify prints verify's summary line, then a line per problem and
// per orphan.
func (r *Report) WriteVerify(out io.Writer) error {
	w := bufio.NewWriter(out)
	reachable := 0
	for _, t := range r.Tokens {
		if t.Reachable {
			reachable++
		}
	}
	fmt.Fprintf(w, "verify: %s: %s, %d of %s read, %s, %s\n",
		r.Verdict(), human.Count(len(r.Rows), "key"), reachable, human.Count(len(r.Tokens), "token"), human.Count(len(r.Problems), "problem"), human.Count(len(r.Orphans), "orphan"))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM %s %s %s: %s\n", p.Kind, p.Token, p.Locator, p.Detail)
	}
	for _, o := range r.Orphans {
		fmt.Fprintf(w, "ORPHAN %s %s %q\n", o.Token, o.ID, o.Label)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "NOTE identity: %s\n", n)
	}
	return w.Flush()
}

// VerifyDoc is verify's JSON document.
func (r *Report) VerifyDoc() any {
	return jsondoc.New("verify", struct {
		Verdict  string    `json:"verdict"`
		Tokens   []Token   `json:"tokens"`
		Keys     int       `json:"key_count"`
		Problems []Problem `json:"problems"`
		Orphans  []Orphan  `json:"orphans"`
		Notes    []string  `json:"notes"`
	}{r.Verdict(), r.Tokens, len(r.Rows), r.Problems, r.Orphans, r.Notes})
}

// WriteStatus prints status: per repository its tokens, keys, ceremonies
// and the keys in use without a confirmed backup.
func WriteStatus(out io.Writer, repos []RepositoryStatus) error {
	w := bufio.NewWriter(out)
	for _, r := range repos {
		gate := "backups not required by the enforcer"
		if r.RequireBackup {
			gate = "RequireBackup"
		}
		fmt.Fprintf(w, "repository %s (%s)\n", r.Name, gate)
		for _, t := range r.Tokens {
			if !t.Reachable {
				fmt.Fprintf(w, "  %s: UNREACHABLE: %s\n", t.Describe, t.Error)
				continue
			}
			fmt.Fprintf(w, "  %s: reachable, token %q serial %s, %s\n", t.Describe, t.Label, t.Serial, human.Count(t.Keys, "private key"))
		}
		b := r.Backup
		fmt.Fprintf(w, "  keys: %d (Not Required %d, Required %d, Prepared %d, Done %d)\n", r.Keys, b.NotRequired, b.Required, b.Prepared, b.Done)
		if r.KeyguardOnly > 0 {
			fmt.Fprintf(w, "  covered by ods-keyguard only (Not Required in the enforcer, in a confirmed ceremony): %d\n", r.KeyguardOnly)
		}
		if c := r.LastConfirmed; c != nil {
			fmt.Fprintf(w, "  last confirmed backup: %s, %s, %s\n", c.ID, c.Ended.Format(human.Display), human.Count(len(c.Keys), "key"))
		} else {
			fmt.Fprintf(w, "  last confirmed backup: none\n")
		}
		if c := r.Open; c != nil {
			fmt.Fprintf(w, "  open ceremony: %s (%s), %s\n", c.ID, c.Status, human.Count(len(c.Keys), "key"))
		}
		fmt.Fprintf(w, "  in use without a confirmed backup: %d\n", len(r.Unbacked))
		for _, u := range r.Unbacked {
			fmt.Fprintf(w, "    %s %s %d %s backup %s (%s)\n", u.Zone, u.Role, u.KeyTag, u.Locator, u.Backup, strings.Join(u.Live, ", "))
		}
	}
	return w.Flush()
}

// StatusDoc is status's JSON document.
func StatusDoc(repos []RepositoryStatus) any {
	return jsondoc.New("status", struct {
		Repositories []RepositoryStatus `json:"repositories"`
	}{repos})
}
