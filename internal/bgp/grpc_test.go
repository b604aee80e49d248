package bgp

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestGRPCAPIListsPeers starts a speaker with GoBGP's gRPC API on a
// loopback port and lists its neighbours with GoBGP's own client, as the
// stock `gobgp neighbor` does. No root needed: the speaker only dials
// (listen_port -1) and its neighbour is passive.
func TestGRPCAPIListsPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // GoBGP opens it; a race for the port is unlikely on loopback

	cfg := Config{
		AS: 65001, RouterID: "10.77.0.1", ListenPort: -1, GRPCAddress: addr,
		Neighbors: []Neighbor{{Address: "192.0.2.7", PeerAS: 65007, Families: []string{FamilyIPv4Unicast}, Passive: true}},
		Networks:  []string{"198.51.100.0/24"},
	}
	_, ctx := startTestSpeaker(t, cfg)

	conn, err := grpc.DialContext(ctx, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := api.NewGobgpApiClient(conn)
	var peers []*api.Peer
	for {
		peers = peers[:0]
		stream, err := cl.ListPeer(ctx, &api.ListPeerRequest{}, grpc.WaitForReady(true))
		if err == nil {
			for {
				r, rerr := stream.Recv()
				if errors.Is(rerr, io.EOF) {
					break
				}
				if rerr != nil {
					err = rerr
					break
				}
				peers = append(peers, r.Peer)
			}
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ListPeer over gRPC at %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(peers) != 1 || peers[0].Conf.NeighborAddress != "192.0.2.7" || peers[0].Conf.PeerAsn != 65007 {
		t.Fatalf("gRPC ListPeer = %v, want the one configured neighbour 192.0.2.7 AS 65007", peers)
	}
	g, err := cl.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil || g.Global.Asn != 65001 || g.Global.RouterId != "10.77.0.1" {
		t.Fatalf("gRPC GetBgp = %v, %v", g, err)
	}
}
