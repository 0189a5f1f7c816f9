package main

// The bash completion script, written out from the command tree when the
// package is built (ods-keyguard __bash-completion): completing never runs
// ods-keyguard, so a word typed after --operator or --config never becomes
// a flag's value in a command that then runs.

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionCommand prints the script (make deb installs it).
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:   "__bash-completion",
		Hidden: true,
		Action: func(c *cli.Context) error {
			return writeBashCompletion(c.App.Writer, c.App)
		},
	}
}

// fileFlags are the flags whose value is a file: bash completes file names.
var fileFlags = map[string]bool{"config": true, "prometheus": true}

// completionHeader begins the script: the tables the walk fills.
const completionHeader = `# bash completion for ods-keyguard: every command and every command's
# flags, written from the program's own command tree when the package was
# built. Completing never runs ods-keyguard.

declare -gA _ods_keyguard_cmds _ods_keyguard_flags _ods_keyguard_values _ods_keyguard_files
`

// completionFunc ends the script: the function that reads the tables.
const completionFunc = `
_ods_keyguard() {
	local cur prev node=ods-keyguard w i skip=""
	COMPREPLY=()
	# The plugin link is check.
	[[ "${COMP_WORDS[0]##*/}" == check_ods_keyguard ]] && node="ods-keyguard check"
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	# The command typed so far: words that name a subcommand, skipping
	# flags and their values.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w="${COMP_WORDS[i]}"
		if [[ -n "$skip" ]]; then
			skip=""
			continue
		fi
		case "$w" in
		-*=*) ;;
		-*) [[ "${_ods_keyguard_values[$node]}" == *" $w "* ]] && skip=1 ;;
		*) [[ " ${_ods_keyguard_cmds[$node]} " == *" $w "* ]] && node="$node $w" ;;
		esac
	done
	if [[ -n "$skip" ]]; then
		# The value of the flag before: a file name, or nothing to offer.
		if [[ "${_ods_keyguard_files[$node]}" == *" $prev "* ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		return 0
	fi
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "${_ods_keyguard_flags[$node]}" -- "$cur"))
	elif [[ -n "${_ods_keyguard_cmds[$node]}" ]]; then
		COMPREPLY=($(compgen -W "${_ods_keyguard_cmds[$node]}" -- "$cur"))
	fi
	return 0
}

complete -o bashdefault -o default -F _ods_keyguard ods-keyguard
complete -o bashdefault -o default -F _ods_keyguard check_ods_keyguard
`

func writeBashCompletion(w io.Writer, app *cli.App) error {
	var b strings.Builder
	b.WriteString(completionHeader)
	writeCompletionNode(&b, "ods-keyguard", app.Commands, app.Flags)
	b.WriteString(completionFunc)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCompletionNode writes the tables' rows for the command at path
// (its subcommands, its flags, those that take a value, those whose value
// is a file), then for each of its subcommands.
func writeCompletionNode(b *strings.Builder, path string, cmds []*cli.Command, flags []cli.Flag) {
	var subs []string
	for _, c := range cmds {
		if !c.Hidden && c.Name != "help" {
			subs = append(subs, c.Name)
		}
	}
	var names, values, files []string
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			opt := "--" + n
			if len(n) == 1 {
				opt = "-" + n
			}
			names = append(names, opt)
			if !isBool {
				values = append(values, opt)
				if fileFlags[f.Names()[0]] {
					files = append(files, opt)
				}
			}
		}
	}
	names = append(names, "--help", "-h")
	if path == "ods-keyguard" {
		names = append(names, "--version", "-v")
	}
	names = unique(names)
	fmt.Fprintf(b, "_ods_keyguard_cmds[%q]=%q\n", path, strings.Join(subs, " "))
	fmt.Fprintf(b, "_ods_keyguard_flags[%q]=%q\n", path, strings.Join(names, " "))
	fmt.Fprintf(b, "_ods_keyguard_values[%q]=%q\n", path, " "+strings.Join(values, " ")+" ")
	fmt.Fprintf(b, "_ods_keyguard_files[%q]=%q\n", path, " "+strings.Join(files, " ")+" ")
	for _, c := range cmds {
		if !c.Hidden && c.Name != "help" {
			writeCompletionNode(b, path+" "+c.Name, c.Subcommands, c.Flags)
		}
	}
}

// unique keeps the first of each word, in order.
func unique(words []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range words {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}
