package netnstests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Helpers of the BGP feature tests (graceful restart, reload,
// redistribution, max-prefix).

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
type routeWatch struct{ *testbed.Daemon }

func watchRoutes(t *testing.T, ns *testbed.Netns) *routeWatch {
	t.Helper()
	d, err := testbed.StartDaemon(t, exec.Command("ip", "-n", ns.Name(), "monitor", "route"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // subscribed before anything happens
	return &routeWatch{d}
}

// lines returns the monitor's lines mentioning prefix.
func (m *routeWatch) lines(prefix string) []string {
	var out []string
	for _, l := range strings.Split(m.Log.String(), "\n") {
		if strings.Contains(l, prefix) {
			out = append(out, l)
		}
	}
	return out
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

// birdSessionConf is BIRD in a host of a Line, in one BGP session "xr" with the
// router (AS 65001 at rtr) from local (AS as), with a 9 s hold time and
// 1 s retries. It announces statics (blackholes of protocol "st"; with
// none it exports nothing) and imports everything. A grTime > 0 turns
// graceful restart on with that restart time.
func birdSessionConf(local string, as int, rtr string, statics []string, grTime int) string {
	var st strings.Builder
	export := "none"
	if len(statics) > 0 {
		st.WriteString("protocol static st { ipv4;")
		for _, r := range statics {
			fmt.Fprintf(&st, " route %s blackhole;", r)
		}
		st.WriteString(" }\n")
		export = `where proto = "st"`
	}
	gr := ""
	if grTime > 0 {
		gr = fmt.Sprintf("\tgraceful restart on;\n\tgraceful restart time %d;\n", grTime)
	}
	return fmt.Sprintf(`router id %s;
protocol device {}
%sprotocol bgp xr {
	local %s as %d;
	neighbor %s as 65001;
	hold time 9;
	connect retry time 1;
	error wait time 1, 2;
%s	ipv4 { import all; export %s; };
}
`, local, st.String(), local, as, rtr, gr, export)
}

// birdConfDst is birdSessionConf for BIRD on the dst host (10.201.2.2, AS 65002).
func birdConfDst(statics []string, grTime int) string {
	return birdSessionConf(dst4, 65002, rtrDst4, statics, grTime)
}

// bgpHead opens the line router's bgp section: AS 65001, router id
// 10.201.2.1, no BGP listener (it dials its neighbours), no gRPC API.
const bgpHead = `bgp:
  as: 65001
  router_id: 10.201.2.1
  listen_port: -1
  grpc_address: ""
`

// lineBGP is the line router's bgp section toward BIRD on the dst host: it
// learns 10.99.0.0/16 routes and announces 10.201.1.0/24; gr is inserted
// after the networks verbatim (a graceful_restart block, or "").
func lineBGP(gr string) string {
	return bgpHead + `  networks: [10.201.1.0/24]
` + gr + `  prefix_lists:
    - name: from-peer
      entries: [{prefix: 10.99.0.0/16, le: 32}]
    - name: ours
      entries: [{prefix: 10.201.1.0/24}]
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
      hold_time: 9s
      import: from-peer
      export: ours
`
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
