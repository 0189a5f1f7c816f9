package backup

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// The run sheet: a ceremony's script for the witnesses, printed at prepare
// and ticked by hand, with a line to sign for each step of the procedure;
// printed again after done, it carries the checkpoint the step signed, so
// that the paper and the log pin each other. Markdown, and a PDF made by
// groff (ms macros and tbl) where groff is installed.

// sheet is the run sheet as a model: both renderings come from it.
type sheet struct {
	title  string
	facts  [][2]string
	tables []sheetTable
	notes  []string
}

type sheetTable struct {
	title  string
	header []string
	rows   [][]string
}

// procedure is the key backup procedure's steps, as the witnesses tick them.
var procedure = []string{
	"Prepare OpenDNSSEC for key backup: ods-keyguard backup prepare (done: see the checkpoint above)",
	"Remove the backup token from its secure storage location",
	"Plug the backup token into the HSM",
	"Instruct the HSM to make a backup of the HSM contents",
	"Remove the backup token from the HSM",
	"Return the backup token to its secure storage location",
	"Instruct OpenDNSSEC that the keys were backed up: ods-keyguard backup done --backup-token NAME, and write its checkpoint below",
}

// makeSheet builds the sheet of c, with the seal of its last step.
func makeSheet(c *ledger.Ceremony, label string, seal Seal) sheet {
	s := sheet{title: "Key backup ceremony " + c.ID}
	fact := func(k, v string) { s.facts = append(s.facts, [2]string{k, v}) }
	fact("Repository", fmt.Sprintf("%s (token %q)", c.Repository, label))
	fact("Status", c.Status)
	fact("Prepared", fmt.Sprintf("%s by %s", c.Prepared.UTC().Format(human.Display), c.Operator))
	fact("Witnesses at prepare", names(c.Witnesses))
	if !c.Ended.IsZero() {
		fact("Ended", fmt.Sprintf("%s by %s", c.Ended.UTC().Format(human.Display), c.EndOperator))
		fact("Witnesses at the end", names(c.EndWitnesses))
	}
	if t := c.BackupToken; t != nil {
		fact("Backup token", fmt.Sprintf("%q, label %q, serial %s", t.Name, t.Label, t.Serial))
	}
	switch {
	case seal.Checkpoint != nil:
		fact("Ledger checkpoint", seal.Checkpoint.Short())
	case seal.Head != nil:
		fact("Ledger head (not signed)", seal.Head.Short())
	}
	tokens := sheetTable{title: "Tokens", header: []string{"Kind", "Name", "Label", "Serial"}}
	for _, t := range c.Tokens {
		tokens.rows = append(tokens.rows, []string{t.Kind, t.Name, t.Label, t.Serial})
	}
	keys := sheetTable{title: fmt.Sprintf("Keys (%d)", len(c.Keys)), header: []string{"Locator", "Role", "Zones", "Key tag", "Type"}}
	for _, k := range c.Keys {
		zones, tag := strings.Join(k.Zones, ", "), "-"
		if zones == "" {
			zones = "(pool)"
		}
		if k.KeyTag > 0 {
			tag = fmt.Sprint(k.KeyTag)
		}
		keys.rows = append(keys.rows, []string{k.Locator, k.Role, zones, tag, k.Type})
	}
	steps := sheetTable{title: "Procedure", header: []string{"Step", "What", "Time", "Operator", "Witness"}}
	for i, p := range procedure {
		steps.rows = append(steps.rows, []string{fmt.Sprint(i + 1), p, "", "", ""})
	}
	s.tables = []sheetTable{tokens, keys, steps}
	if len(c.Checks) > 0 {
		checks := sheetTable{title: "Checked by ods-keyguard", header: []string{"Check"}}
		for _, ch := range c.Checks {
			checks.rows = append(checks.rows, []string{ch})
		}
		s.tables = append(s.tables, checks)
	}
	s.notes = append(s.notes, "Checkpoint after backup done, as read aloud: ledger ______ ____-____-____-____-____")
	if seal.Checkpoint != nil {
		s.notes = append(s.notes, "Signed checkpoint:\n"+seal.Checkpoint.Note)
	}
	return s
}

func names(ws []string) string {
	if len(ws) == 0 {
		return "(none named)"
	}
	return strings.Join(ws, ", ")
}

// markdown renders the sheet.
func (s sheet) markdown() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", s.title)
	for _, f := range s.facts {
		fmt.Fprintf(&b, "- **%s:** %s\n", f[0], mdCell(f[1]))
	}
	for _, t := range s.tables {
		fmt.Fprintf(&b, "\n## %s\n\n| %s |\n|%s\n", t.title, strings.Join(t.header, " | "), strings.Repeat("---|", len(t.header)))
		for _, r := range t.rows {
			cells := make([]string, len(r))
			for i, c := range r {
				cells[i] = mdCell(c)
				if c == "" {
					cells[i] = "________"
				}
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	for _, n := range s.notes {
		if strings.Contains(n, "\n") {
			head, body, _ := strings.Cut(n, "\n")
			fmt.Fprintf(&b, "\n%s\n\n```\n%s```\n", head, body)
			continue
		}
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.Bytes()
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// troff renders the sheet for groff -ms -t.
func (s sheet) troff() []byte {
	var b bytes.Buffer
	esc := func(v string) string {
		v = strings.ReplaceAll(v, "\\", "\\e")
		if strings.HasPrefix(v, ".") || strings.HasPrefix(v, "'") {
			v = "\\&" + v
		}
		return v
	}
	fmt.Fprintf(&b, ".TL\n%s\n.LP\n", esc(s.title))
	for _, f := range s.facts {
		fmt.Fprintf(&b, ".br\n\\fB%s:\\fP %s\n", esc(f[0]), esc(f[1]))
	}
	for _, t := range s.tables {
		fmt.Fprintf(&b, ".SH\n%s\n.LP\n.TS\nbox tab(\x1f);\n%s.\n", esc(t.title), strings.TrimSpace(strings.Repeat("lb ", len(t.header))))
		fmt.Fprintf(&b, "%s\n_\n", strings.Join(t.header, "\x1f"))
		last := strings.TrimSpace(strings.Repeat("l ", len(t.header)))
		if t.title == "Procedure" {
			last = "l lw(2.6i) lw(0.9i) lw(0.9i) lw(0.9i)"
		}
		fmt.Fprintf(&b, ".T&\n%s.\n", last)
		for _, r := range t.rows {
			cells := make([]string, len(r))
			for i, c := range r {
				cells[i] = "T{\n" + esc(c) + "\nT}"
			}
			fmt.Fprintf(&b, "%s\n_\n", strings.Join(cells, "\x1f"))
		}
		b.WriteString(".TE\n")
	}
	for _, n := range s.notes {
		head, body, multi := strings.Cut(n, "\n")
		fmt.Fprintf(&b, ".LP\n%s\n", esc(head))
		if multi {
			b.WriteString(".DS L\n.ft CW\n")
			for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
				fmt.Fprintf(&b, "%s\n", esc(l))
			}
			b.WriteString(".ft\n.DE\n")
		}
	}
	return b.Bytes()
}

// RunSheet renders the run sheet of c: Markdown, or a PDF when pdf is
// set (groff, as a child bounded by ctx).
func RunSheet(ctx context.Context, c *ledger.Ceremony, tokenLabel string, seal Seal, pdf bool) ([]byte, error) {
	s := makeSheet(c, tokenLabel, seal)
	if !pdf {
		return s.markdown(), nil
	}
	if _, err := exec.LookPath("groff"); err != nil {
		return nil, fmt.Errorf("run sheet as PDF: groff is not installed (apt-get install groff), write it as .md")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := proc.Command(ctx, "groff", "-t", "-ms", "-Tpdf")
	cmd.Stdin = bytes.NewReader(s.troff())
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := proc.Run(ctx, cmd); err != nil {
		return nil, fmt.Errorf("run sheet as PDF: groff: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}
