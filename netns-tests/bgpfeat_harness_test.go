package netnstests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Helpers of the BGP feature tests (graceful restart, reload,
// redistribution, max-prefix).

// bgpRouterConfig writes the line router's config with an api socket and
// the given bgp section (YAML, indented two spaces under "bgp:").
func bgpRouterConfig(t *testing.T, tp *topo, sock, bgpBody string) string {
	t.Helper()
	return writeFile(t, "xrouter.yaml", bgpConfigText(tp, sock, bgpBody))
}

func bgpConfigText(tp *topo, sock, bgpBody string) string {
	return fmt.Sprintf(`dataplane:
  interfaces: [%s, %s]
  mode: native
  pin_path: %s
  manage_forwarding: true
log:
  level: debug
  format: text
api:
  socket: %s
bgp:
%s`, testbed.LineRouterSrcDev, testbed.LineRouterDstDev, tp.Pin, sock, bgpBody)
}

// replaceConfig replaces the file's content at once (for a SIGHUP
// reload), so the daemon never reads half a file.
func replaceConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// routeWatch is `ip -n NS monitor route` running for the test (watchRoutes).
type routeWatch struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

func watchRoutes(t *testing.T, ns *testbed.Netns) *routeWatch {
	t.Helper()
	m := &routeWatch{out: &lockedBuffer{}}
	m.cmd = exec.Command("ip", "-n", ns.Name(), "monitor", "route")
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("ip monitor route: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-done
	})
	time.Sleep(100 * time.Millisecond) // subscribed before anything happens
	return m
}

// lines returns the monitor's lines mentioning prefix.
func (m *routeWatch) lines(prefix string) []string {
	var out []string
	for _, l := range strings.Split(m.out.String(), "\n") {
		if strings.Contains(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// bgpKernelRoute is `ip route show PREFIX proto bgp` in ns ("" when absent).
func bgpKernelRoute(ns *testbed.Netns, prefix string) string {
	out, _ := ns.IPExec("route", "show", prefix, "proto", "bgp")
	return strings.TrimSpace(out)
}

// routesOf is BIRD's `show route protocol P`.
func (b *birdPeer) routesOf(proto string) string {
	return b.birdc("show", "route", "protocol", proto)
}

// protocolLine is BIRD's `show protocols P` line for P: name, proto, table,
// state, since, info.
func (b *birdPeer) protocolLine(proto string) []string {
	for _, l := range strings.Split(b.birdc("show", "protocols", proto), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == proto {
			return f
		}
	}
	return nil
}

// sessionUp reports whether BIRD's session P is Established, and since
// when (BIRD's since column).
func (b *birdPeer) sessionUp(proto string) (bool, string) {
	f := b.protocolLine(proto)
	if len(f) < 6 {
		return false, ""
	}
	return f[len(f)-1] == "Established", strings.Join(f[4:len(f)-1], " ")
}

// peerRowJSON is one entry of `xrouter peers --json`.
type peerRowJSON struct {
	Address       string `json:"address"`
	PeerAS        uint32 `json:"peer_as"`
	State         string `json:"state"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Received      uint64 `json:"received"`
	Accepted      uint64 `json:"accepted"`
	Installed     int    `json:"installed"`
	GR            bool   `json:"graceful_restart"`
	Restarting    bool   `json:"peer_restarting"`
	HeldDown      string `json:"held_down"`
}

func peersByAddr(t *testing.T, cfgPath string) map[string]peerRowJSON {
	t.Helper()
	stdout, stderr, err := xr("peers", "--json", "-c", cfgPath)
	if err != nil {
		t.Fatalf("xrouter peers --json: %v: %s", err, stderr)
	}
	var ps []peerRowJSON
	if err := json.Unmarshal([]byte(stdout), &ps); err != nil {
		t.Fatalf("xrouter peers --json: %v: %s", err, stdout)
	}
	out := map[string]peerRowJSON{}
	for _, p := range ps {
		out[p.Address] = p
	}
	return out
}

// birdConfGR is BIRD on the dst host of a Line: announces its static
// routes to the router (AS 65001) with graceful restart on and short
// timers.
func birdConfGR(statics []string, restartTime int, extra string) string {
	var st strings.Builder
	for _, r := range statics {
		fmt.Fprintf(&st, " route %s blackhole;", r)
	}
	return fmt.Sprintf(`router id 10.201.2.2;
protocol device {}
protocol static st { ipv4;%s }
protocol bgp xr {
	local 10.201.2.2 as 65002;
	neighbor 10.201.2.1 as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
	graceful restart on;
	graceful restart time %d;
	ipv4 { import all; export where proto = "st"; };
	%s
}
`, st.String(), restartTime, extra)
}

// grpcNeighbours lists the neighbours through GoBGP's gRPC API at addr in
// ns, with GoBGP's own client (what the stock `gobgp neighbor` does). The
// connection is dialled from inside ns.
func grpcNeighbours(t *testing.T, ns *testbed.Netns, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, "tcp", a)
				return err
			})
			return c, err
		}))
	if err != nil {
		t.Fatalf("gRPC dial %s in %s: %v", addr, ns.Name(), err)
	}
	defer conn.Close()
	stream, err := api.NewGobgpApiClient(conn).ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		t.Fatalf("gRPC ListPeer at %s: %v", addr, err)
	}
	var out []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("gRPC ListPeer at %s: %v", addr, err)
		}
		out = append(out, r.Peer.Conf.NeighborAddress)
	}
	slices.Sort(out)
	return out
}
