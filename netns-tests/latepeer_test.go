package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Sessions with a neighbour that comes up late (issue 11). xrouter dials a
// neighbour that is not ready: a GoBGP speaker that has not added xrouter
// yet, or a BIRD not started yet. When the neighbour becomes ready it dials too.
// GoBGP's idle state used to refuse every connection the neighbour opened
// during its 5 s idle hold, and two speakers that both dial then fell into
// step, each refused while the other idled, for minutes. xrouter now takes
// such a connection (tools/gobgppatch); each round below must establish
// within latePeerBound of the neighbour becoming ready.

const latePeerBound = 15 * time.Second

// latePeerBGP is the router's bgp section toward the dst host: listening on
// 179 (the neighbour's connections must reach it), active.
const latePeerBGP = `bgp:
  as: 65001
  router_id: 10.201.2.1
  grpc_address: ""
  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
      hold_time: 9s
`

// refusedFor is how long xrouter dials a neighbour that is not ready
// before it becomes ready: long enough for xrouter to have been turned
// away and gone through its idle hold at least once, as in the report.
const refusedFor = 8 * time.Second

// afterRefusal waits until xrouter's next dial has been turned away (its
// log says the neighbour went back to idle after the log had n bytes),
// then for lag more. A speaker that adds the neighbour then dials while
// xrouter's idle hold runs, and xrouter's next dial lands in the middle
// of the speaker's own idle hold: the alignment in which two speakers
// that refuse during the idle hold stay in step longest.
func afterRefusal(t *testing.T, d *daemon, n int, lag time.Duration) {
	t.Helper()
	if !waitFor(30*time.Second, func() bool {
		for _, l := range strings.Split(d.Log.String()[n:], "\n") {
			if strings.Contains(l, "bgp neighbour state") && strings.Contains(l, "state=idle") {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("xrouter's dials were not turned away (no move to idle logged); log:\n%s", neighbourLines(d.Log.String()))
	}
	time.Sleep(lag)
}

func establishedWithin(t *testing.T, cfgPath, peer string, bound time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	ok := waitFor(bound, func() bool { return readPeers(t, cfgPath)[peer].State == "established" })
	return time.Since(start), ok
}

// lateSpeakerEnv makes the test binary a GoBGP v3 speaker (the module
// xrouter builds with, unpatched FSM aside) that listens on 179 from the
// start but adds its neighbour only once a file exists: what the report
// saw from a gobgpd-based feeder that loaded its table before adding the
// neighbour. (Debian's gobgpd 3.10 waits out its connect-retry time
// before dialling a neighbour added through its CLI, so it never dials
// into xrouter's idle hold and cannot show the problem.)
const lateSpeakerEnv = "XRNT_LATESPEAKER"

type lateSpeakerConfig struct {
	Local, Peer string
	AS, PeerAS  uint32
	ReadyFile   string
}

func lateSpeakerMain() (int, bool) {
	s := os.Getenv(lateSpeakerEnv)
	if s == "" {
		return 0, false
	}
	var c lateSpeakerConfig
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
	if err := bs.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer(); p != nil && p.Peer != nil && p.Peer.State != nil {
			fmt.Printf("%s speaker: neighbour %s %s\n", time.Now().Format("15:04:05.000"), p.Peer.State.NeighborAddress, p.Peer.State.SessionState)
		}
	}); err != nil {
		fmt.Println("watch:", err)
		return 1, true
	}
	for {
		if _, err := os.Stat(c.ReadyFile); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("%s speaker: adding the neighbour\n", time.Now().Format("15:04:05.000"))
	if err := bs.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:     &api.PeerConf{NeighborAddress: c.Peer, PeerAsn: c.PeerAS},
		Timers:   &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 9, KeepaliveInterval: 3}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}}}}); err != nil {
		fmt.Println("addpeer:", err)
		return 1, true
	}
	select {}
}

// TestLatePeerGoBGPPrivileged: a GoBGP v3 speaker listens from the start
// but adds xrouter as a neighbour only once xrouter has been turned away
// for a while; it then dials at once, as xrouter does. Three rounds, each
// with a new speaker.
func TestLatePeerGoBGPPrivileged(t *testing.T) {
	tp := newTopo(t)
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, latePeerBGP)
	d := startDaemon(t, tp.Router, cfgPath)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		ready := filepath.Join(t.TempDir(), "ready")
		b, _ := json.Marshal(lateSpeakerConfig{Local: dst4, Peer: rtrDst4, AS: 65002, PeerAS: 65001, ReadyFile: ready})
		sp := startPeerProc(t, "gobgp-speaker", tp.Dst, "env", lateSpeakerEnv+"="+string(b), exe)
		time.Sleep(refusedFor)
		afterRefusal(t, d, len(d.Log.String()), 2*time.Second)
		if err := os.WriteFile(ready, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		took, ok := establishedWithin(t, cfgPath, dst4, latePeerBound)
		if !ok {
			t.Fatalf("round %d: no session %s after the speaker added the neighbour: %+v\nspeaker:\n%s\nxrouter:\n%s",
				round, latePeerBound, readPeers(t, cfgPath)[dst4], tail(sp.Log.String(), 3000), neighbourLines(d.Log.String()))
		}
		t.Logf("round %d: established %.1f s after the speaker added the neighbour", round, took.Seconds())
		sp.kill(t)
		if !waitFor(20*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State != "established" }) {
			t.Fatalf("round %d: session still up after the speaker was killed", round)
		}
	}
}

// neighbourLines are the daemon log's neighbour state changes and GoBGP's
// lines about connections, the last 40.
func neighbourLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "neighbour state") || strings.Contains(l, "onnection") {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-40):], "\n")
}

// TestLatePeerBIRDPrivileged: BIRD with its default timers starts only
// after xrouter has been dialling it for a while, and again after a
// SIGKILL; two rounds.
func TestLatePeerBIRDPrivileged(t *testing.T) {
	tp := newTopo(t)
	cfgPath, _ := writeRouterConfig(t, tp, lineRouterIfaces, latePeerBGP)
	d := startDaemon(t, tp.Router, cfgPath)
	conf := fmt.Sprintf(`router id %s;
protocol device {}
protocol bgp xr {
	local %s as 65002;
	neighbor %s as 65001;
	hold time 9;
	ipv4 { import all; export none; };
}
`, dst4, dst4, rtrDst4)
	logLen := 0
	for round := range 2 {
		// xrouter dials a host with nothing on port 179 until BIRD starts.
		time.Sleep(refusedFor)
		b := startBIRD(t, tp.Dst, conf)
		took, ok := establishedWithin(t, cfgPath, dst4, latePeerBound)
		if !ok {
			t.Fatalf("round %d: no session %s after BIRD started: %+v\nbirdc show protocols all xr:\n%s\nxrouter log since:\n%s",
				round, latePeerBound, readPeers(t, cfgPath)[dst4], b.birdc("show", "protocols", "all", "xr"), tail(d.Log.String()[logLen:], 3000))
		}
		t.Logf("round %d: established %.1f s after BIRD started", round, took.Seconds())
		logLen = len(d.Log.String())
		b.kill(t)
		if !waitFor(20*time.Second, func() bool { return readPeers(t, cfgPath)[dst4].State != "established" }) {
			t.Fatalf("round %d: session still up after BIRD was killed", round)
		}
	}
}
