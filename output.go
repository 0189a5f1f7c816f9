package main

// How commands print: text, or with --json a document of a published
// schema (schema/), also when a command fails before it has one.

import (
	"encoding/json"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ods-keyguard/ods-keyguard/internal/jsondoc"
)

// output prints a command's result: its JSON document with --json, else
// its text.
func output(c *cli.Context, doc any, text func(io.Writer) error) error {
	if c.Bool("json") {
		return writeJSON(c.App.Writer, doc)
	}
	return text(c.App.Writer)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print a JSON document"} }

// jsonCommand is the schema name of the command that args run (hook
// pending: hook-pending) when that command prints JSON and --json is among
// its arguments; "" otherwise. It reads args as given, so that a failure
// before the command's action (a bad flag, the configuration) still gets
// the document its caller asked for.
func jsonCommand(app *cli.App, args []string) string {
	cmds, path := app.Commands, []string(nil)
	var cmd *cli.Command
	i := 1
	for i < len(args) {
		a := args[i]
		i++
		if a == "--" {
			return ""
		}
		if cmd != nil && len(cmd.Subcommands) == 0 {
			if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
				return strings.Join(path, "-")
			}
			continue
		}
		if strings.HasPrefix(a, "-") {
			if (a == "--config" || a == "-config") && i < len(args) {
				i++
			}
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			return ""
		}
		cmd, cmds, path = next, next.Subcommands, append(path, next.Name)
		if len(cmds) == 0 && !hasFlag(cmd, "json") {
			return ""
		}
	}
	return ""
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// failureDocument is what a --json command prints when it fails before it
// has a document of its own: its schema, and the error with the exit
// status. The backup commands' documents carry their error as a string
// already (ok false); check prints its UNKNOWN verdict itself.
func failureDocument(name string, code int, msg string) any {
	switch name {
	case "backup-prepare", "backup-done", "backup-rollback":
		return jsondoc.New(name, struct {
			OK         bool   `json:"ok"`
			Error      string `json:"error"`
			Ceremonies []any  `json:"ceremonies"`
			Messages   []any  `json:"messages"`
		}{false, msg, []any{}, []any{}})
	}
	type failure struct {
		Message    string `json:"message"`
		ExitStatus int    `json:"exit_status"`
	}
	return jsondoc.New(name, struct {
		Error failure `json:"error"`
	}{failure{msg, code}})
}

// invokedKey is where the app's Metadata holds the command line as it was
// invoked, before a hook or plugin name was turned into a subcommand.
const invokedKey = "invoked"

// jsonKey is where it holds the schema name of the command when --json
// was asked for (jsonCommand), for a failure before the flags are parsed.
const jsonKey = "json"

// countingWriter counts what a command wrote to stdout.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}
