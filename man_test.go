package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// The man pages are the reference, and TestManPagesComplete holds them to
// the program, read from the program itself (the cli.Command tree and
// config.Config), never from a list kept by hand:
//   - both pages render with man --warnings without a word;
//   - every command has a .SS section of ods-keyguard(8) whose title starts
//     with its name; the section names every flag it has, and the title
//     names no flag it lacks;
//   - the codes of its "Exit status:" in --help are those of the section's
//     EXIT STATUS (or of "EXIT STATUS of the NAME commands");
//   - EXIT STATUS of ods-keyguard(8) describes every exit code of exit.go;
//   - every key of keyguard.toml is a .TP item of its section of
//     keyguard.toml(5), and every item there is a key the program reads.
func TestManPagesComplete(t *testing.T) {
	pages := map[string]string{}
	for _, page := range []string{"packaging/ods-keyguard.8", "packaging/keyguard.toml.5"} {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		pages[page] = string(b)
		renderMan(t, page)
	}
	man8 := manSections(pages["packaging/ods-keyguard.8"])
	app := newApp(nil, io.Discard, io.Discard)
	var walk func(path []string, cmds []*cli.Command, exit string)
	walk = func(path []string, cmds []*cli.Command, exit string) {
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			p := append(slices.Clone(path), c.Name)
			own := exit
			if codes := exitCodes(c.Description, "Exit status:"); codes != "" {
				own = codes
			}
			if len(c.Subcommands) > 0 {
				walk(p, c.Subcommands, own)
				continue
			}
			checkCommandSection(t, man8, strings.Join(p, " "), c, own)
		}
	}
	walk(nil, app.Commands, "")
	// The general exit statuses.
	exits := man8.section("EXIT STATUS")
	for _, code := range []int{exitOK, exitProblems, exitUsage, exitUnknown} {
		if !regexp.MustCompile(`(?m)^\.B ` + string(rune('0'+code)) + `$`).MatchString(exits) {
			t.Errorf("ods-keyguard(8) EXIT STATUS does not describe exit status %d", code)
		}
	}
	checkConfigPage(t, manSections(pages["packaging/keyguard.toml.5"]))
}

// renderMan formats page as man does, and fails on any warning.
func renderMan(t *testing.T, page string) {
	t.Helper()
	sandbox.NeedTools(t, "man")
	c := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", page)
	c.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_DISABLE_SECCOMP=1")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil || stderr.Len() > 0 || !bytes.Contains(stdout.Bytes(), []byte("SEE ALSO")) {
		t.Errorf("man --warnings -l %s: %v\n%s", page, err, stderr.String())
	}
}

// manPage is a roff page cut into its .SH and .SS sections, in order, with
// roff's \- read as -.
type manPage []struct{ title, body string }

func manSections(page string) manPage {
	var out manPage
	for _, l := range strings.Split(strings.ReplaceAll(page, `\-`, "-"), "\n") {
		if t, ok := strings.CutPrefix(l, ".SH "); ok {
			out = append(out, struct{ title, body string }{t, ""})
			continue
		}
		if t, ok := strings.CutPrefix(l, ".SS "); ok {
			out = append(out, struct{ title, body string }{".SS " + t, ""})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body += l + "\n"
		}
	}
	return out
}

// section is the body of the .SH section titled title, its .SS sections
// included.
func (m manPage) section(title string) string {
	var b strings.Builder
	in := false
	for _, s := range m {
		if !strings.HasPrefix(s.title, ".SS ") {
			in = s.title == title
		}
		if in {
			b.WriteString(s.title + "\n" + s.body)
		}
	}
	return b.String()
}

// commandSection finds the .SS section whose title lists command path.
func (m manPage) commandSection(path string) (title, body string, ok bool) {
	re := regexp.MustCompile(`^\.SS (.*, )?` + regexp.QuoteMeta(path) + `( |,|$)`)
	for _, s := range m {
		if re.MatchString(s.title) {
			return s.title, s.body, true
		}
	}
	return "", "", false
}

var (
	exitCodeWord = regexp.MustCompile(`(?:^|[;,:]\s*)(\d{1,3})(?:\s+[A-Za-z(.]|$)`)
	titleFlag    = regexp.MustCompile(`(?:^|[\s\[|])(--[a-z][a-z-]*|-[a-zA-Z])\b`)
)

// exitCodes are the codes an exit status sentence lists ("0 listed; 3 the
// records could not be read" gives "0 3"), from after marker to the end
// of its paragraph; "" when text has none.
func exitCodes(text, marker string) string {
	i := strings.Index(text, marker)
	if i < 0 {
		return ""
	}
	text = strings.TrimSpace(text[i+len(marker):])
	if j := strings.Index(text, "\n\n"); j >= 0 {
		text = text[:j]
	}
	for _, end := range []string{"\n.PP", "\n.SS", "\n.SH", "\n.TP", "\n.RS", "\n.IP"} {
		if j := strings.Index(text, end); j >= 0 {
			text = text[:j] // a new paragraph ends the sentence
		}
	}
	seen := map[string]bool{}
	var codes []string
	for _, m := range exitCodeWord.FindAllStringSubmatch(text, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			codes = append(codes, m[1])
		}
	}
	slices.Sort(codes)
	return strings.Join(codes, " ")
}

func checkCommandSection(t *testing.T, man manPage, path string, c *cli.Command, exit string) {
	t.Helper()
	title, body, ok := man.commandSection(path)
	if !ok {
		t.Errorf("ods-keyguard(8) has no .SS section for %q: add one to packaging/ods-keyguard.8", path)
		return
	}
	text := title + "\n" + body
	has := map[string]bool{"--config": true, "--help": true, "-h": true}
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			dash := "--" + n
			if len(n) == 1 {
				dash = "-" + n
			}
			has[dash] = true
		}
		if vf, ok := f.(cli.VisibleFlag); (ok && !vf.IsVisible()) || f.Names()[0] == "config" {
			continue
		}
		found := false
		for _, n := range f.Names() {
			dash := "--" + n
			if len(n) == 1 {
				dash = "-" + n
			}
			if regexp.MustCompile(`(^|[^a-z-])` + regexp.QuoteMeta(dash) + `([^a-z-]|$)`).MatchString(text) {
				found = true
			}
		}
		if !found {
			t.Errorf("ods-keyguard(8) %s: the section does not name its flag --%s", path, f.Names()[0])
		}
	}
	// The title names the flags of every command it lists: those of this
	// one are checked here, only in the part of the title about it.
	part := title[strings.Index(title, path):]
	if i := strings.Index(part, ", "); i >= 0 && strings.Contains(part[i:], " ") && regexp.MustCompile(`, [a-z]+ [a-z-]+`).MatchString(part[i:]) {
		part = part[:i]
	}
	for _, m := range titleFlag.FindAllStringSubmatch(part, -1) {
		if !has[m[1]] {
			t.Errorf("ods-keyguard(8) %s: the title names %s, which the command does not have", path, m[1])
		}
	}
	want := exitCodes(body, "EXIT STATUS:")
	if want == "" {
		parent := strings.Fields(path)[0]
		for _, s := range man {
			if got := exitCodes(s.body, "EXIT STATUS of the "+parent+" commands:"); got != "" {
				want = got
			}
		}
	}
	switch {
	case exit == "":
		t.Errorf("ods-keyguard %s --help gives no \"Exit status:\"", path)
	case want == "":
		t.Errorf("ods-keyguard(8) %s: no EXIT STATUS in its section", path)
	case !strings.Contains(" "+want+" ", " 0 ") || !containsAll(want, exit):
		t.Errorf("ods-keyguard %s: --help gives exit statuses %q, ods-keyguard(8) %q", path, exit, want)
	}
}

// containsAll says whether the codes of a man section (which may describe
// several commands) include every code of one command.
func containsAll(section, command string) bool {
	have := strings.Fields(section)
	for _, c := range strings.Fields(command) {
		if !slices.Contains(have, c) {
			return false
		}
	}
	return true
}

// manSectionOfKey is the .SH section of keyguard.toml(5) that describes a
// key of the program, by the key's first part.
func manSectionOfKey(key string) (string, string) {
	i := strings.IndexByte(key, '.')
	if i < 0 {
		return "TOP-LEVEL KEYS", key
	}
	first, rest := key[:i], key[i+1:]
	switch first {
	case "repository", "backup_token":
		return "[" + first + ".NAME]", rest
	case "mirror":
		return "[[mirror]]", rest
	}
	// Tables of tables keyed by a name: [publish.zones."example.com"].
	if z, ok := strings.CutPrefix(rest, "zones."); ok && first == "publish" {
		return "[publish.zones.ZONE]", z
	}
	// A table in a table: [ledger.signing_hsm] module.
	if j := strings.LastIndexByte(rest, '.'); j >= 0 {
		return "[" + first + "." + rest[:j] + "]", rest[j+1:]
	}
	return "[" + first + "]", rest
}

var manItem = regexp.MustCompile(`(?m)^\.TP\n\.B ([a-z_]+)$`)

func checkConfigPage(t *testing.T, man5 manPage) {
	t.Helper()
	want := map[string][]string{}
	for _, k := range tomlKeys(reflect.TypeOf(config.Config{}), "") {
		sec, name := manSectionOfKey(k)
		want[sec] = append(want[sec], name)
	}
	for sec, keys := range want {
		body := man5.section(sec)
		if body == "" {
			t.Errorf("keyguard.toml(5) has no section %s for %v", sec, keys)
			continue
		}
		var items []string
		for _, m := range manItem.FindAllStringSubmatch(body, -1) {
			items = append(items, m[1])
		}
		for _, k := range keys {
			if !slices.Contains(items, k) {
				t.Errorf("keyguard.toml(5) %s does not describe %s (a .TP item \".B %s\")", sec, k, k)
			}
		}
		for _, it := range items {
			if !slices.Contains(keys, it) {
				t.Errorf("keyguard.toml(5) %s describes %s, which the program does not read", sec, it)
			}
		}
	}
}
