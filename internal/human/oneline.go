package human

// Messages for the places that take one line: a monitoring plugin's first
// line, syslog, an error on stderr.

import "strings"

// OneLine folds s onto one line: every run of white space, newlines
// included, becomes one space.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
