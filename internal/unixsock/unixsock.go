// Package unixsock creates the daemon's unix control sockets so that they
// have their final mode and group from the moment anyone can reach them:
// the socket is bound inside a private (0700) directory, given its mode and
// group there, and only then renamed to its configured path. No window
// exists in which a socket is reachable with the process umask's mode, as
// there is with chmod after listen.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Pending is a socket path being set up: Bind where TmpPath says, then
// Publish.
type Pending struct {
	what    string // for errors: "api socket"
	path    string // the configured path
	tmpDir  string // private directory next to path
	TmpPath string // where the server binds
	gid     int    // -1: root's group, mode 0600; else mode 0660
}

// Prepare checks path (a stale socket of an earlier run is fine, one that
// answers, or a file that is not a socket, is not) and creates the private
// directory to bind in; the socket's directory is created 0755 if missing.
// gid < 0 gives mode 0600, otherwise 0660 with that group.
func Prepare(what, path string, gid int) (*Pending, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s %s: exists and is not a socket", what, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s %s: in use by another process (another xrouter?)", what, path)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s directory: %w", what, err)
	}
	tmp, err := os.MkdirTemp(dir, ".xrouter-sock-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("%s: private directory: %w", what, err)
	}
	return &Pending{what: what, path: path, tmpDir: tmp, TmpPath: filepath.Join(tmp, "s"), gid: gid}, nil
}

// Publish gives the bound socket its mode and group and moves it into
// place. It returns the socket as owned, for Remove.
func (p *Pending) Publish() (*Owned, error) {
	defer os.RemoveAll(p.tmpDir)
	mode := os.FileMode(0o600)
	if p.gid >= 0 {
		mode = 0o660
		if err := os.Chown(p.TmpPath, -1, p.gid); err != nil {
			return nil, fmt.Errorf("%s: group %d: %w", p.what, p.gid, err)
		}
	}
	if err := os.Chmod(p.TmpPath, mode); err != nil {
		return nil, fmt.Errorf("%s: mode %o: %w", p.what, mode, err)
	}
	if err := os.Rename(p.TmpPath, p.path); err != nil {
		return nil, fmt.Errorf("%s: moving into place at %s: %w", p.what, p.path, err)
	}
	o := &Owned{path: p.path}
	if fi, err := os.Lstat(p.path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			o.inode = st.Ino
		}
	}
	return o, nil
}

// Abort removes the private directory and whatever was bound in it.
func (p *Pending) Abort() { os.RemoveAll(p.tmpDir) }

// Owned is a published socket.
type Owned struct {
	path  string
	inode uint64
}

// Remove deletes the socket if it is still the one published (another
// process may have replaced it since).
func (o *Owned) Remove() {
	fi, err := os.Lstat(o.path)
	if err != nil || o.inode == 0 {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == o.inode {
		os.Remove(o.path)
	}
}

// Listener is a unix listener whose Close also removes its published path.
type Listener struct {
	*net.UnixListener
	owned *Owned
}

// Close stops listening and removes the socket.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	l.owned.Remove()
	return err
}

// Listen creates a listening socket at path with mode 0600, or 0660 and
// group gid when gid >= 0, reachable only once it has them.
func Listen(what, path string, gid int) (*Listener, error) {
	p, err := Prepare(what, path, gid)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.TmpPath, Net: "unix"})
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	// The bound name moves; the listener must not unlink it by that name.
	ln.SetUnlinkOnClose(false)
	o, err := p.Publish()
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &Listener{UnixListener: ln, owned: o}, nil
}

// LookupGroup resolves a group name or numeric gid.
func LookupGroup(group string) (int, error) {
	if group == "" {
		return -1, errors.New("empty group name")
	}
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}
