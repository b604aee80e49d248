package bgp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// GoBGP's API can add paths and neighbours and has no authentication of
// its own. On a Unix socket the file's mode and group are the access
// control; on TCP, a port on loopback is open to every local user, and
// anything wider needs TLS.

// unixScheme prefixes a Unix socket path in bgp.grpc_address, as in the
// gobgp CLI's --target.
const unixScheme = "unix://"

// grpcSocketPath returns the Unix socket path of addr, or "" for TCP.
func grpcSocketPath(addr string) string {
	if p, ok := strings.CutPrefix(addr, unixScheme); ok {
		return p
	}
	return ""
}

// validateGRPC checks grpc_address, grpc_group and grpc_tls together.
func (c Config) validateGRPC() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	t := c.GRPCTLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("bgp.grpc_tls: cert_file and key_file go together")
	}
	if t.ClientCAFile != "" && !t.enabled() {
		bad("bgp.grpc_tls.client_ca_file: needs cert_file and key_file")
	}
	switch path := grpcSocketPath(c.GRPCAddress); {
	case c.GRPCAddress == "":
		if c.GRPCGroup != "" || t.enabled() {
			bad("bgp.grpc_address: empty (API off), but grpc_group or grpc_tls is set")
		}
	case path != "" || strings.HasPrefix(c.GRPCAddress, "/"):
		if !filepath.IsAbs(path) || filepath.Clean(path) != path || strings.HasSuffix(path, "/") {
			bad("bgp.grpc_address: %q: want unix:///ABSOLUTE/PATH (unix:// and a clean absolute path)", c.GRPCAddress)
		}
		if t.enabled() {
			bad("bgp.grpc_tls: only for a TCP address (a Unix socket is protected by its mode and group)")
		}
	default:
		ap, err := netip.ParseAddrPort(c.GRPCAddress)
		if err != nil {
			bad("bgp.grpc_address: %q is neither unix:///PATH nor IP:port", c.GRPCAddress)
			break
		}
		if c.GRPCGroup != "" {
			bad("bgp.grpc_group: only for a Unix socket (grpc_address unix:///PATH)")
		}
		if !ap.Addr().IsLoopback() && !t.enabled() {
			bad("bgp.grpc_address: %s is not a loopback address: refused without TLS (bgp.grpc_tls.cert_file and key_file), because the API changes routes and neighbours", ap)
		}
	}
	return errs
}

// Warnings names the API settings open wider than root, for `config
// check`: a loopback TCP port (any local user), a Unix socket shared with
// a group, TLS without client certificates.
func (c Config) Warnings() []string {
	var w []string
	switch path := grpcSocketPath(c.GRPCAddress); {
	case c.GRPCAddress == "":
	case path != "":
		if c.GRPCGroup != "" {
			w = append(w, fmt.Sprintf("bgp.grpc_group: members of group %s may change routes and neighbours through %s", c.GRPCGroup, path))
		}
	default:
		ap, err := netip.ParseAddrPort(c.GRPCAddress)
		switch {
		case err != nil:
		case ap.Addr().IsLoopback():
			w = append(w, fmt.Sprintf("bgp.grpc_address: TCP %s: every local user may change routes and neighbours; prefer %s", ap, DefaultGRPCAddress))
		case c.GRPCTLS.ClientCAFile == "":
			w = append(w, fmt.Sprintf("bgp.grpc_address: TCP %s with TLS but no bgp.grpc_tls.client_ca_file: whoever reaches the port may change routes and neighbours", ap))
		}
	}
	return w
}

// grpcSocket is GoBGP's API socket while it is set up: GoBGP listens on
// its own (we cannot hand it a listener), so it binds in a directory only
// root can enter; the socket gets its mode and group there and is then
// renamed to the configured path. At no point can anyone else reach it
// with wider permissions.
type grpcSocket struct {
	path    string // the configured path
	tmpDir  string // private (0700) directory next to path
	tmpPath string // where GoBGP binds
	gid     int    // -1: root's group, mode 0600
	inode   uint64 // of the socket once in place, so Stop removes only ours
}

// prepareGRPCSocket checks path and creates the private directory GoBGP
// binds in. The socket's directory is created 0755 if missing.
func prepareGRPCSocket(path, group string) (*grpcSocket, error) {
	gs := &grpcSocket{path: path, gid: -1}
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("bgp.grpc_group: %w", err)
		}
		gs.gid = gid
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("gobgp api socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("gobgp api socket %s: in use by another process", path)
		}
		// A stale socket of an earlier run: the rename replaces it.
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gobgp api socket directory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".gobgp-api-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("gobgp api socket: private directory: %w", err)
	}
	gs.tmpDir, gs.tmpPath = tmp, filepath.Join(tmp, "s")
	return gs, nil
}

// lookupGroup resolves a group name or numeric gid.
func lookupGroup(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// publish waits until GoBGP has bound its socket, gives it its mode and
// group while it is still in the private directory, and renames it into
// place.
func (gs *grpcSocket) publish(timeout time.Duration) error {
	defer os.RemoveAll(gs.tmpDir)
	deadline := time.Now().Add(timeout)
	for {
		fi, err := os.Lstat(gs.tmpPath)
		if err == nil && fi.Mode().Type() == fs.ModeSocket {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gobgp api did not bind its socket within %s (see the gobgp log above)", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mode := os.FileMode(0o600)
	if gs.gid >= 0 {
		mode = 0o660
		if err := os.Chown(gs.tmpPath, -1, gs.gid); err != nil {
			return fmt.Errorf("gobgp api socket: group %d: %w", gs.gid, err)
		}
	}
	if err := os.Chmod(gs.tmpPath, mode); err != nil {
		return fmt.Errorf("gobgp api socket: mode %o: %w", mode, err)
	}
	if err := os.Rename(gs.tmpPath, gs.path); err != nil {
		return fmt.Errorf("gobgp api socket: moving into place at %s: %w", gs.path, err)
	}
	if fi, err := os.Lstat(gs.path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gs.inode = st.Ino
		}
	}
	return nil
}

// remove deletes the socket if it is still ours (another process may have
// replaced it since).
func (gs *grpcSocket) remove() {
	os.RemoveAll(gs.tmpDir)
	fi, err := os.Lstat(gs.path)
	if err != nil || gs.inode == 0 {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == gs.inode {
		os.Remove(gs.path)
	}
}

// grpcTLSOption loads the TLS configuration of the API.
func grpcTLSOption(t GRPCTLS) (server.ServerOption, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("bgp.grpc_tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("bgp.grpc_tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("bgp.grpc_tls.client_ca_file: no PEM certificate in " + t.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return server.GrpcOption([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}), nil
}
