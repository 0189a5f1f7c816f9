// Package proc runs child processes that cannot outlive their deadline: each
// runs in a process group of its own, the whole group is killed when the
// context ends, and Wait returns soon after even when a grandchild keeps a
// pipe open. A process that ods-keyguard starts never stalls the enforcer.
package proc

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// waitDelay bounds how long Wait waits for the pipes once the group is
// killed.
const waitDelay = 2 * time.Second

// Command is exec.CommandContext with a process group of its own: when ctx
// ends, the group is sent SIGKILL. The child also gets SIGKILL if this
// process dies first.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return KillGroup(cmd) }
	cmd.WaitDelay = waitDelay
	return cmd
}

// CommandGrace is Command for a child that must not be cut off in the
// middle of a write: when ctx ends the group is sent SIGTERM, and SIGKILL
// only if it is still there grace later. If this process dies first the
// child gets SIGTERM too. The child is expected to finish what it is doing
// and exit on SIGTERM (the token readers do: SoftHSMv2 rewrites its
// token.object in place on C_Login, and a token killed between truncating
// and writing it is lost).
func CommandGrace(ctx context.Context, grace time.Duration, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error {
		err := signalGroup(cmd, syscall.SIGTERM)
		time.AfterFunc(grace, func() { KillGroup(cmd) })
		return err
	}
	cmd.WaitDelay = grace + waitDelay
	return cmd
}

// Run starts cmd (made by Command), waits for it and then kills what is
// left of its process group: a forward script that put something in the
// background does not leave it behind. When ctx ended first, the error
// wraps ctx.Err().
func Run(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	err := cmd.Wait()
	KillGroup(cmd)
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}

// KillGroup kills what is left of cmd's process group, for a caller that
// ran Start and Wait itself.
func KillGroup(cmd *exec.Cmd) error { return signalGroup(cmd, syscall.SIGKILL) }

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
