package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/ods-keyguard/ods-keyguard/config"
	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// maxTracked is the largest file the repository may track: sources, scripts,
// schemas and small fixtures fit well below it; a build output does not.
const maxTracked = 1 << 20

// TestTrackedFiles keeps build outputs out of git: no tracked file may be
// larger than 1 MiB or hold a NUL byte in its first 8,000 bytes (git's own
// test for binary content), so an executable committed by mistake fails the
// suite instead of riding along in every clone.
func TestTrackedFiles(t *testing.T) {
	if _, err := os.Stat(".git"); err != nil {
		if sandbox.Strict {
			t.Fatalf("not a git checkout: %v", err)
		}
		t.Skip("not a git checkout")
	}
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		fi, err := os.Lstat(name)
		if err != nil {
			continue // deleted in the work tree, not yet committed
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxTracked {
			t.Errorf("%s: %d bytes tracked in git (at most %d): a build output? remove it and list it in .gitignore", name, fi.Size(), maxTracked)
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(data) > 8000 {
			data = data[:8000]
		}
		if bytes.IndexByte(data, 0) >= 0 {
			t.Errorf("%s: binary content tracked in git: a build output? remove it and list it in .gitignore", name)
		}
	}
}

// The minimal configuration of docs/operations.md loads as written on a
// host with Debian's OpenDNSSEC (/etc/opendnssec/conf.xml, as
// scripts/setup.sh installs it), and every other keyguard.toml fragment
// the README and the docs show is made of keys ods-keyguard knows.
func TestDocsConfigurations(t *testing.T) {
	ops, err := os.ReadFile("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(ops)
	text = text[strings.Index(text, "\n## Configuration\n"):]
	text = text[:strings.Index(text[1:], "\n## ")]
	tomlBlock := regexp.MustCompile("(?s)```toml\n(.*?)```")
	blocks := tomlBlock.FindAllStringSubmatch(text, -1)
	if len(blocks) < 4 {
		t.Fatalf("%d toml blocks in docs/operations.md's Configuration, want the minimal one, a mirror, the hooks and a backup token", len(blocks))
	}
	dir := t.TempDir()
	minimal := filepath.Join(dir, "minimal.toml")
	if err := os.WriteFile(minimal, []byte(blocks[0][1]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/opendnssec/conf.xml"); err == nil || sandbox.Strict {
		if _, err := config.Load(minimal); err != nil {
			t.Errorf("the minimal configuration: %v", err)
		}
	}
	// The fragments: strict decoding, the PIN files and conf.xml aside.
	known := map[string]bool{}
	for _, k := range tomlKeys(reflect.TypeOf(config.Config{}), "") {
		known[k] = true
	}
	for _, page := range append([]string{"README.md"}, docPages(t)...) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tomlBlock.FindAllStringSubmatch(string(b), -1) {
			var doc map[string]any
			if _, err := toml.Decode(m[1], &doc); err != nil {
				t.Errorf("%s: toml block does not parse: %v\n%s", page, err, m[1])
				continue
			}
			for _, k := range flatKeys(doc, "") {
				if !known[k] {
					t.Errorf("%s: toml block: unknown key %s", page, k)
				}
			}
		}
	}
}

// docPages are the operators' pages under docs/.
func docPages(t *testing.T) []string {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs/*.md: %v %v", pages, err)
	}
	return pages
}

// maxREADME is the README's budget: an entry point that ends in "read
// on", not the manual.
const maxREADME = 16 << 10

// The README is an entry point, and no page of the documentation sends
// its reader outside the repository (what is not shipped cannot be read).
func TestDocsStayInTheRepository(t *testing.T) {
	if fi, err := os.Stat("README.md"); err != nil || fi.Size() >= maxREADME {
		t.Errorf("README.md: %v bytes, %v: keep it under %d; the rest belongs in docs/ or the man pages", fi.Size(), err, maxREADME)
	}
	link := regexp.MustCompile(`\]\(([^)#\s]*)(#[^)\s]*)?\)`)
	for _, page := range append([]string{"README.md", "CONTRIBUTING.md"}, docPages(t)...) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := filepath.Join(filepath.Dir(page), m[1])
			if m[1] == "" {
				target = page
			}
			if strings.Contains(m[1], "://") || strings.HasPrefix(filepath.Clean(target), "..") {
				t.Errorf("%s: links to %s, outside the repository (and the package)", page, m[1])
				continue
			}
			// A section it names must be there (a page another branch
			// brings, not here yet, is not read).
			if m[2] == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			if text, err := os.ReadFile(target); err == nil && !slices.Contains(headingAnchors(string(text)), m[2][1:]) {
				t.Errorf("%s: links to %s%s, a section %s does not have", page, m[1], m[2], target)
			}
		}
	}
}

// headingAnchors are the anchors GitHub gives a Markdown page's headings:
// lower case, punctuation dropped, spaces as dashes.
func headingAnchors(page string) []string {
	var out []string
	inCode := false
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
		}
		h, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " ")
		if inCode || !ok || !strings.HasPrefix(l, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// flatKeys lists a decoded TOML document's keys as tomlKeys names them:
// tables by their field names, [repository.NAME] and [backup_token.NAME]
// without NAME, env and new_zones as values.
func flatKeys(doc map[string]any, prefix string) []string {
	var keys []string
	for k, v := range doc {
		switch v := v.(type) {
		case map[string]any:
			if prefix == "" && (k == "repository" || k == "backup_token") {
				for _, inner := range v {
					if m, ok := inner.(map[string]any); ok {
						keys = append(keys, flatKeys(m, k+".")...)
					}
				}
				continue
			}
			if k == "env" || k == "new_zones" {
				keys = append(keys, prefix+k)
				continue
			}
			keys = append(keys, flatKeys(v, prefix+k+".")...)
		case []map[string]any:
			for _, m := range v {
				keys = append(keys, flatKeys(m, prefix+k+".")...)
			}
		default:
			keys = append(keys, prefix+k)
		}
	}
	return keys
}

// TestGofmt keeps every Go file as gofmt writes it: a merge can leave an
// import out of order without breaking the build.
func TestGofmt(t *testing.T) {
	gofmt := filepath.Join(runtime.GOROOT(), "bin", "gofmt")
	if _, err := os.Stat(gofmt); err != nil {
		gofmt = "gofmt"
	}
	out, err := exec.Command(gofmt, "-l", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("gofmt -l: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("not gofmt'd (run gofmt -w): %s", strings.ReplaceAll(s, "\n", ", "))
	}
}

// maxMainFunc is the longest function package main may have, besides the
// command declarations (a *cli.Command with its help text): the command
// layer parses flags, makes one call into the package that owns the
// concept, and renders; anything longer is logic in the wrong place.
const maxMainFunc = 60

func TestCommandLayerIsThin(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range pkgs["main"].Files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || strings.HasSuffix(fd.Name.Name, "Command") {
				continue
			}
			start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
			if n := end.Line - start.Line + 1; n > maxMainFunc {
				t.Errorf("%s:%d: %s is %d lines, over %d: move its logic into the package that owns the concept", start.Filename, start.Line, fd.Name.Name, n, maxMainFunc)
			}
		}
	}
}

// labPrefix is the tree of the test lab: the sandbox, the benchmarks and
// the demo. Production code never imports it.
const labPrefix = "github.com/ods-keyguard/ods-keyguard/internal/lab"

// TestReleaseHasNoLab holds the release binary to production code: no
// package the command is built from, with the release's build tags (none),
// is a lab package, and none of them reads the failpoint variable.
func TestReleaseHasNoLab(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, labPrefix) {
			t.Errorf("the release binary imports %s: test machinery belongs to the lab, outside what main imports", p)
		}
	}
}

// countFormat finds a number printed before a plural noun in a format
// string ("%d problems", "%d open ceremonies"), which reads wrong for one:
// such counts go through human.Count or human.Noun. The words after %d
// that are no plural noun: verbs, and units a count of one never meets.
var (
	countFormat = regexp.MustCompile(`%d (?:[a-z][a-z-]* ){0,2}?([A-Za-z-]+s)\b`)
	notNouns    = map[string]bool{"needs": true, "does": true, "was": true, "is": true, "has": true, "this": true, "bytes": true, "bits": true, "verifies": true, "expires": true}
)

// TestCountsReadRight holds every message to "1 problem", never "1
// problems": no format string of the program prints a count before a
// plural noun by hand.
func TestCountsReadRight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	wd, _ := os.Getwd()
	for _, dir := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dir, wd) {
			continue // a module of someone else's
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkgs {
			for _, f := range p.Files {
				ast.Inspect(f, func(n ast.Node) bool {
					lit, ok := n.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						return true
					}
					for _, m := range countFormat.FindAllStringSubmatch(lit.Value, -1) {
						if !notNouns[m[1]] {
							t.Errorf("%s: %q prints a count before a plural noun: one reads wrong (\"1 %s\"): use human.Count or human.Noun", fset.Position(lit.Pos()), m[0], m[1])
						}
					}
					return true
				})
			}
		}
	}
}
