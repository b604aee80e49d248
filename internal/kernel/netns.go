package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNamespace runs fn on an OS thread inside the network namespace at path
// (/run/netns/NAME); with an empty path it runs fn on the caller's thread.
// A socket belongs to the namespace it was created in, and devmap updates,
// XDP attach and ioctls act in the calling thread's: hence a thread, not a
// process, moves. The caller's own thread never moves: fn runs on a fresh
// goroutine locked to its thread, and a thread that cannot be moved back
// stays locked so that the runtime discards it with the goroutine. An fn
// that leaves its goroutine without returning (runtime.Goexit, a test's
// FailNow) is reported as ErrGoexit rather than blocking the caller.
func InNamespace(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		returned := false
		defer func() {
			if !returned {
				errc <- ErrGoexit
			}
		}()
		err := onThreadIn(path, fn)
		returned = true
		errc <- err
	}()
	return <-errc
}

// onThreadIn is InNamespace's body on its own goroutine: lock the thread,
// enter, run fn, leave. The thread is unlocked only when it is back in its
// own namespace.
func onThreadIn(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Left locked: the thread dies with its goroutine.
		return fmt.Errorf("leaving network namespace %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// ErrGoexit is InNamespace's error when fn exits its goroutine without
// returning.
var ErrGoexit = errors.New("function run in a network namespace exited its goroutine without returning (t.FailNow or runtime.Goexit?)")

// EnterNamespace moves the calling goroutine's thread into the network
// namespace at path for good and leaves it locked there: for a process
// about to re-execute itself from that thread, so that every thread of the
// new image starts in the namespace.
func EnterNamespace(path string) error {
	runtime.LockOSThread()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	return nil
}
