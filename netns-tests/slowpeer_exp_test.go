package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xrouter/xrouter/internal/testbed"
)

// Reproduction of issue 11's slow peer (not part of `make test`; run with
// XRNT_SLOWPEER=N, and XRNT_SLOWPEER_PASSIVE=1 for passive: true on
// xrouter's side): a GoBGP-library feeder in its own namespace that
// listens on 179 and loads N paths, each with its own AS path, before it
// adds xrouter as neighbour; xrouter dials it meanwhile. It reports how
// long the session took after the neighbour was added and how many
// ACTIVE → OPENSENT → IDLE cycles the feeder went through. It passes
// either way: whether the lockstep happens depends on timing (see the
// report in the issue).

const gobgpFeedEnv = "XRNT_GOBGPFEED"

type gobgpFeedConfig struct {
	Local, Peer string
	AS, PeerAS  uint32
	N           int
	Passive     bool
}

func gobgpFeedMain() (int, bool) {
	s := os.Getenv(gobgpFeedEnv)
	if s == "" {
		return 0, false
	}
	var c gobgpFeedConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		fmt.Println(err)
		return 2, true
	}
	ctx := context.Background()
	bs := server.NewBgpServer()
	go bs.Serve()
	if err := bs.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: c.AS, RouterId: c.Local,
		ListenPort: 179, ListenAddresses: []string{c.Local}}}); err != nil {
		fmt.Println("start:", err)
		return 1, true
	}
	_ = bs.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer(); p != nil && p.Peer != nil && p.Peer.State != nil {
			fmt.Printf("%s feeder peer %s state %s\n", time.Now().Format("15:04:05.000"), p.Peer.State.NeighborAddress, p.Peer.State.SessionState)
		}
	})
	t0 := time.Now()
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: c.Local})
	i := 0
	genPrefixes4(c.N, func(p netip.Prefix) {
		i++
		asp, _ := anypb.New(&api.AsPathAttribute{Segments: []*api.AsSegment{{Type: 2, Numbers: []uint32{c.AS, 1000 + uint32(i%60000), 100000 + uint32(i)}}}})
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
		if _, err := bs.AddPath(ctx, &api.AddPathRequest{Path: &api.Path{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
			Nlri: nlri, Pattrs: []*anypb.Any{origin, nh, asp}}}); err != nil {
			fmt.Println("addpath:", err)
		}
	})
	fmt.Printf("%s feeder loaded %d paths in %.1f s; adding the neighbour\n", time.Now().Format("15:04:05.000"), c.N, time.Since(t0).Seconds())
	if err := bs.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{Conf: &api.PeerConf{NeighborAddress: c.Peer, PeerAsn: c.PeerAS},
		Transport: &api.Transport{PassiveMode: c.Passive},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}}}}); err != nil {
		fmt.Println("addpeer:", err)
	}
	select {}
}

func TestSlowPeerExperimentPrivileged(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XRNT_SLOWPEER"))
	if n == 0 {
		t.Skip("experiment: XRNT_SLOWPEER=N")
	}
	testbed.RequireRoot(t)
	p := newBenchPair(t)
	pin := testbed.PinDir(t, prefix)
	conf := fmt.Sprintf(`dataplane:
  interfaces: [%s]
  mode: native
  pin_path: %s
  detach_on_exit: true
api:
  socket: ""
log:
  level: debug
bgp:
  as: %d
  router_id: %s
  grpc_address: ""
  prefix_lists:
    - name: all
      entries: [{prefix: 0.0.0.0/0, le: 32}]
  neighbors:
    - address: %s
      peer_as: %d
      families: [ipv4-unicast]
      import: all
      passive: %v
`, benchRecvDev, pin, benchRecvAS, benchRecvAddr, benchFeedAddr, benchFeedAS, os.Getenv("XRNT_SLOWPEER_PASSIVE") != "")
	d := startDaemon(t, p.recv, writeFile(t, "xrouter.yaml", conf))
	exe, _ := os.Executable()
	b, _ := json.Marshal(gobgpFeedConfig{Local: benchFeedAddr, Peer: benchRecvAddr, AS: benchFeedAS, PeerAS: benchRecvAS, N: n})
	f := startPeerProc(t, "gobgp-feeder", p.feed, "env", gobgpFeedEnv+"="+string(b), exe)
	waitFor(10*time.Minute, func() bool { return strings.Contains(f.Log.String(), "adding the neighbour") })
	t.Logf("feeder: %s", f.Log.String())
	added := time.Now()
	up := waitFor(5*time.Minute, func() bool { return strings.Contains(f.Log.String(), "state ESTABLISHED") })
	log := f.Log.String()
	cycles := strings.Count(log[strings.Index(log, "adding the neighbour"):], "state IDLE") - 1
	t.Logf("established %v, %.0f s after the neighbour was added, after %d refused cycles; feeder log:\n%s",
		up, time.Since(added).Seconds(), cycles, log)
	var lines []string
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, "Peer") || strings.Contains(l, "peer") || strings.Contains(l, "session") || strings.Contains(l, "accepted") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("xrouter log (peer lines):\n%s", strings.Join(lines, "\n"))
}
