package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is one `xrouter run` (or any long-running child) started by a
// test or a benchmark, with its output collected.
type Daemon struct {
	// Cmd is the started command; Cmd.Process.Pid is the daemon's PID
	// (nsenter and setpriv exec in place).
	Cmd *exec.Cmd
	// Log is its stdout and stderr.
	Log  *LockedBuffer
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

// ErrStillRunning is Signal's error when the process outlived the timeout.
var ErrStillRunning = errors.New("still running")

// StartDaemon starts cmd with its output collected in Log. The child gets
// SIGKILL if the test binary dies without running cleanups (a -timeout
// panic, SIGPIPE on its output), and when the test ends it is killed
// (SIGKILL, by PID) if it still runs and reaped; its log is shown if the
// test failed. It does not wait for anything the daemon logs: see WaitLog.
func StartDaemon(t testing.TB, cmd *exec.Cmd) (*Daemon, error) {
	d := &Daemon{Cmd: cmd, Log: &LockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = d.Log, d.Log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	pid := d.Pid()
	t.Cleanup(func() {
		d.Kill()
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) not reaped 10 s after SIGKILL", d.name(), pid)
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log:\n%s", d.name(), pid, d.Log.String())
		}
	})
	return d, nil
}

// name is the command line, for messages.
func (d *Daemon) name() string { return strings.Join(d.Cmd.Args, " ") }

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Running reports, without blocking, whether the process has not exited.
func (d *Daemon) Running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Done is closed when the process has exited and been reaped.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is Wait's result; valid once Done is closed.
func (d *Daemon) Err() error { return d.err }

// WaitLog polls the log for a substring. It fails if the process exits or
// the timeout passes first; the error carries the log.
func (d *Daemon) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.Log.String(), substr) {
		if !d.Running() {
			return fmt.Errorf("%s exited (%v) before logging %q; log:\n%s", d.name(), d.err, substr, d.Log.String())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %s; log:\n%s", d.name(), substr, timeout, d.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Signal sends sig by PID and waits up to timeout for the process to exit.
// It returns Wait's error, or an error wrapping ErrStillRunning (with the
// log) if the process outlived the timeout; it is then left running.
func (d *Daemon) Signal(sig syscall.Signal, timeout time.Duration) error {
	if err := syscall.Kill(d.Pid(), sig); err != nil {
		return fmt.Errorf("kill -%d %d: %w", sig, d.Pid(), err)
	}
	select {
	case <-d.done:
		return d.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) %w %s after signal %v; log:\n%s", d.name(), d.Pid(), ErrStillRunning, timeout, sig, d.Log.String())
	}
}

// Stop sends SIGTERM and waits up to 15 s; a process still running then is
// killed. It fails unless the process exited with status 0.
func (d *Daemon) Stop() error {
	err := d.Signal(syscall.SIGTERM, 15*time.Second)
	if errors.Is(err, ErrStillRunning) {
		d.Kill()
		<-d.done
		return err
	}
	if err != nil {
		return fmt.Errorf("%s exited with %v; log:\n%s", d.name(), err, d.Log.String())
	}
	return nil
}

// Kill sends SIGKILL by PID if the process still runs; it does not wait.
func (d *Daemon) Kill() {
	if d.Running() {
		_ = syscall.Kill(d.Pid(), syscall.SIGKILL)
	}
}

// LockedBuffer collects a child process's output while a test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
