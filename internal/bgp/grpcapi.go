package bgp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/xrouter/xrouter/internal/unixsock"
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

// grpcSocket is GoBGP's API socket while it is set up. GoBGP listens on
// its own (it cannot be handed a listener), so it binds in unixsock's
// private directory, and publish gives the socket its mode and group and
// moves it into place once GoBGP has bound it.
type grpcSocket struct {
	pending *unixsock.Pending
	owned   *unixsock.Owned
}

func prepareGRPCSocket(path, group string) (*grpcSocket, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = unixsock.LookupGroup(group); err != nil {
			return nil, fmt.Errorf("bgp.grpc_group: %w", err)
		}
	}
	p, err := unixsock.Prepare("gobgp api socket", path, gid)
	if err != nil {
		return nil, err
	}
	return &grpcSocket{pending: p}, nil
}

// publish waits until GoBGP has bound its socket, then publishes it.
func (gs *grpcSocket) publish(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		fi, err := os.Lstat(gs.pending.TmpPath)
		if err == nil && fi.Mode().Type() == fs.ModeSocket {
			break
		}
		if time.Now().After(deadline) {
			gs.pending.Abort()
			return fmt.Errorf("gobgp api did not bind its socket within %s (see the gobgp log above)", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	o, err := gs.pending.Publish()
	gs.owned = o
	return err
}

// remove deletes the socket if it is still ours.
func (gs *grpcSocket) remove() {
	gs.pending.Abort()
	if gs.owned != nil {
		gs.owned.Remove()
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
