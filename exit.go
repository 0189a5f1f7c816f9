package main

import (
	"errors"
	"fmt"
)

// Exit statuses, and errors that carry them: the one mechanism by which a
// command sets its status, for runWith to map and print.

// Exit statuses shared by every command.
const (
	exitOK       = 0
	exitProblems = 1
	exitUsage    = 2
	exitUnknown  = 3
)

const exitCodesHelp = `EXIT STATUS:
   0  ok: nothing wrong was found, the action was done
   1  problems found (verify), action refused (backup), DS withheld or held (hook)
   2  bad usage: unknown command, flag or argument
   3  could not determine: configuration, PKCS#11 module, token, PIN, enforcer
      database or ledger unreadable; enforcer unreachable
   The check command follows the monitoring plugin convention instead:
   0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad usage included).
   recover assess: 0 nothing lost, 1 keys lost but recoverable, 2 keys lost for
   good or a zone must go insecure, 3 could not determine.
   recover plan: 0 no key in use lost for good, 1 every zone concerned can stay
   signed, 2 a zone must go insecure, 3 could not determine.
   hook ds-submit and ds-retract return the forward command's status when that
   failed.
   parent sync: 0 done (what was due was told), 1 an ods-enforcer command
   failed, 3 a parent server or the enforcer's database could not be read
   (nothing told about what was not known).
   publish run (ods-keyguard-publish): 0 published or served already, 1 held
   or refused, 3 could not decide or install, or the reload failed (the
   served version stays); publish release: 0 nothing held, 1 some held, 3 a
   zone could not be looked at; publish review: 0 passes, 1 fails.`

// status is how a command sets its exit status: with err, main prints it;
// without, the command has said what it had to.
type status struct {
	code int
	err  error
}

func (e *status) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *status) Unwrap() error { return e.err }

func exit(code int, err error) error { return &status{code: code, err: err} }

func usagef(format string, args ...any) error {
	return &status{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the exit status.
func exitCode(err error) int {
	var st *status
	if errors.As(err, &st) {
		return st.code
	}
	return exitUnknown
}
