package enforcer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/internal/proc"
)

// CLI runs the ods-enforcer client against the daemon's socket.
type CLI struct {
	Program string // ods-enforcer
	Socket  string
}

// ErrUnreachable is an ods-enforcer that could not connect to the daemon:
// the command did not run.
var ErrUnreachable = errors.New("cannot connect to the enforcer")

// exit statuses of ods-enforcer.
const (
	exitNoConnect = 201
)

// Run runs `ods-enforcer -s SOCKET args...` and returns its stdout without
// the "sock set to" line. A non-zero exit is an error that carries the
// command, its status and what it said on stderr.
func (c CLI) Run(ctx context.Context, args ...string) (string, error) {
	cmd := proc.Command(ctx, c.Program, append([]string{"-s", c.Socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := proc.Run(ctx, cmd)
	out := stripSockLine(stdout.String())
	name := c.Program + " " + strings.Join(args, " ")
	if err != nil {
		if ctx.Err() != nil {
			return out, fmt.Errorf("%s: no answer in time: the enforcer at %s is stuck or too slow", name, c.Socket)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		msg := lastLine(stderr.String())
		if msg == "" {
			msg = lastLine(out)
		}
		if ee.ExitCode() == exitNoConnect {
			return out, fmt.Errorf("%s: %w at %s (is ods-enforcerd running?)", name, ErrUnreachable, c.Socket)
		}
		if msg != "" {
			return out, fmt.Errorf("%s: exit status %d: %s", name, ee.ExitCode(), msg)
		}
		return out, fmt.Errorf("%s: exit status %d", name, ee.ExitCode())
	}
	return out, nil
}

func stripSockLine(s string) string {
	if strings.HasPrefix(s, "sock set to ") {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return s[i+1:]
		}
		return ""
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
