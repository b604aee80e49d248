package netnstests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestFailoverSmokePrivileged is the failover benchmark (make
// bench-failover) at 10,000 IPv4 and 2,000 IPv6 prefixes with xrouter
// only, asserting correctness and never speed: after the load, after kill -9
// of the preferred upstream's speaker and after its return, every sampled
// prefix forwards via the right upstream (probes at its sink), and every
// prefix of both tables has, in GoBGP's RIB (its gRPC API), its best path
// from the right neighbour and, in the kernel FIB, that neighbour as its
// gateway, with nothing wrong or missing.
func TestFailoverSmokePrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	o := failOpts{N4: 10000, N6: 2000, Samples: 1000, Hold: 9, Receivers: []string{"xrouter"},
		Feeds: []string{"diverse"}, Interval: 100 * time.Millisecond}
	checked := 0
	o.Check = func(t *testing.T, ft *failTopo, rcv failReceiver, want uint8) {
		checkFailTables(t, ft, rcv, want)
		if checked++; checked == 1 {
			// The check itself must see a wrong table: against the other
			// upstream, every prefix is wrong in the kernel and the RIB.
			other := viaA + viaB - want
			if n := len(failTableProblems(t, ft, rcv, other)); n != 2*(10000+2000) {
				t.Errorf("checked against the wrong upstream, %d problems found, want %d", n, 2*(10000+2000))
			}
		}
	}
	res := runFailReceiver(t, o, "xrouter", "diverse")
	for _, want := range []string{"kill", "kill-return"} {
		ph := res.phase(want)
		if ph == nil || !ph.OK {
			t.Errorf("phase %s did not converge: %+v", want, ph)
		}
	}
	t.Logf("smoke results (not speed assertions):\n%s", failTable([]failResult{res}))
}

// checkFailTables checks every prefix of both tables against the receiver's
// kernel FIB and (xrouter) GoBGP's RIB: the best path and the kernel route
// must go via the upstream want. It waits up to 30 s for them to agree.
func checkFailTables(t *testing.T, ft *failTopo, rcv failReceiver, want uint8) {
	t.Helper()
	gw4 := fbA4
	if want == viaB {
		gw4 = fbB4
	}
	n4, n6 := 10000, 2000
	var problems []string
	check := func() bool {
		problems = failTableProblems(t, ft, rcv, want)
		return len(problems) == 0
	}
	if !waitFor(30*time.Second, check) {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("… %d in all", len(problems)))
		}
		t.Fatalf("%s, want every prefix via %s:\n%v", rcv.name, gw4, problems)
	}
	t.Logf("%s: all %d + %d prefixes via %s in the kernel FIB%s", rcv.name, n4, n6, gw4,
		map[bool]string{true: " and GoBGP's RIB", false: ""}[rcv.grpc != ""])
}

// failTableProblems lists every prefix of the smoke test's tables whose
// kernel route or GoBGP best path does not go via the upstream want.
func failTableProblems(t *testing.T, ft *failTopo, rcv failReceiver, want uint8) []string {
	t.Helper()
	gw4, gw6 := fbA4, fbA6
	if want == viaB {
		gw4, gw6 = fbB4, fbB6
	}
	var wantPfx []netip.Prefix
	genPrefixes4(10000, func(p netip.Prefix) { wantPfx = append(wantPfx, p) })
	genPrefixes6(2000, func(p netip.Prefix) { wantPfx = append(wantPfx, p) })
	var problems []string
	fib := kernelGateways(t, ft.rcv)
	var rib map[netip.Prefix][]ribPath
	if rcv.grpc != "" {
		rib = gobgpRIB(t, rcv.grpc)
	}
	for _, p := range wantPfx {
		gw := gw4
		if p.Addr().Is6() {
			gw = gw6
		}
		if got := fib[p]; got != gw {
			problems = append(problems, fmt.Sprintf("kernel %s via %q, want %s", p, got, gw))
		}
		if rib == nil {
			continue
		}
		var best []string
		for _, rp := range rib[p] {
			if rp.best {
				best = append(best, rp.neighbor)
			}
			if rp.neighbor != fbA4 && rp.neighbor != fbB4 {
				problems = append(problems, fmt.Sprintf("RIB %s: path from unknown neighbour %s", p, rp.neighbor))
			}
		}
		if len(best) != 1 || best[0] != gwNeighbor(want) {
			problems = append(problems, fmt.Sprintf("RIB %s: best from %v, want %s", p, best, gwNeighbor(want)))
		}
	}
	return problems
}

// gwNeighbor is the session address of the upstream.
func gwNeighbor(want uint8) string {
	if want == viaB {
		return fbB4
	}
	return fbA4
}

// kernelGateways maps each route of the main tables (IPv4 and IPv6) with a
// single gateway to that gateway (ECMP routes map to "multipath").
func kernelGateways(t *testing.T, ns *testbed.Netns) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	for _, fam := range []string{"-4", "-6"} {
		var routes []struct {
			Dst      string `json:"dst"`
			Gateway  string `json:"gateway"`
			Nexthops []any  `json:"nexthops"`
		}
		s := ns.IP(t, "-j", fam, "route", "show", "table", "main")
		if err := json.Unmarshal([]byte(s), &routes); err != nil {
			t.Fatalf("ip -j %s route: %v", fam, err)
		}
		for _, r := range routes {
			p, err := netip.ParsePrefix(r.Dst)
			if err != nil {
				continue // default, host routes without a length
			}
			gw := r.Gateway
			if len(r.Nexthops) > 0 {
				gw = "multipath"
			}
			out[p] = gw
		}
	}
	return out
}

type ribPath struct {
	neighbor string
	best     bool
}

// gobgpRIB lists GoBGP's global RIB (both families) over its gRPC API.
func gobgpRIB(t *testing.T, target string) map[netip.Prefix][]ribPath {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("gRPC %s: %v", target, err)
	}
	defer conn.Close()
	c := api.NewGobgpApiClient(conn)
	out := map[netip.Prefix][]ribPath{}
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		stream, err := c.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL,
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}})
		if err != nil {
			t.Fatalf("gRPC ListPath at %s: %v", target, err)
		}
		for {
			r, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("gRPC ListPath at %s: %v", target, err)
			}
			p, err := netip.ParsePrefix(r.Destination.Prefix)
			if err != nil {
				t.Fatalf("GoBGP prefix %q: %v", r.Destination.Prefix, err)
			}
			for _, path := range r.Destination.Paths {
				out[p] = append(out[p], ribPath{neighbor: path.NeighborIp, best: path.Best})
			}
		}
	}
	return out
}
