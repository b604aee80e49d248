// Package bgp is xrouter's BGP speaker: an embedded GoBGP server behind a
// small API of our own, configured from Config. It peers with the
// configured neighbours, announces the configured networks, and hands the
// best paths it learns to a RouteSink (the kernel FIB writer, fib.Routes).
//
// Policy follows RFC 8212: an eBGP neighbour with no import policy has every
// route it sends rejected, and one with no export policy is sent nothing.
// Give such a neighbour Import and Export prefix lists to exchange routes.
// iBGP neighbours accept and send everything unless a list is given. Policy
// is expressed as one GoBGP import and one export policy on the global RIB
// (GoBGP has per-neighbour policies only for route-server clients), with a
// neighbour-set condition per neighbour.
//
// Best paths are watched with GoBGP's best-path watcher, whose queue is
// unbounded: the watcher callback therefore never waits for the kernel. It
// only records the latest wish per prefix in the sink, which coalesces and
// applies them in its own worker. Paths xrouter originated itself are never
// installed; when one of them becomes the best path for a prefix, any route
// learned earlier for that prefix is removed.
//
// Graceful restart (RFC 4724) is GoBGP's, configured per neighbour; this
// package decides when a start is a restart (SetRestarting) and lets a
// planned stop look like one to peers (Leave). Reload applies a changed
// configuration by difference, Redistribute announces kernel routes, and
// the max-prefix actions GoBGP lacks (warn, hold-down, restart after a
// delay) are added around its prefix limit.
//
// All GoBGP imports of xrouter live in this package.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// RouteSink receives the best paths to install. fib.Routes implements it;
// the calls must not block on the kernel, because they run in GoBGP's
// watcher goroutine.
type RouteSink interface {
	// Set routes prefix via nexthops (ECMP when more than one). The
	// speaker reuses the nexthops slice after the call: copy it to keep it.
	Set(prefix netip.Prefix, nexthops []netip.Addr)
	// Delete removes the route for prefix.
	Delete(prefix netip.Prefix)
	// Sweep removes routes left by an earlier run that were not confirmed;
	// called once every neighbour has sent End-of-RIB for its families.
	Sweep()
}

// PeerState is one neighbour as `xrouter peers` shows it.
type PeerState struct {
	Address  netip.Addr    `json:"address"`
	PeerAS   uint32        `json:"peer_as"`
	State    string        `json:"state"`
	Uptime   time.Duration `json:"uptime"`
	Received uint64        `json:"received"`
	Accepted uint64        `json:"accepted"`
	// GracefulRestart: configured for the neighbour.
	GracefulRestart bool `json:"graceful_restart"`
	// PeerRestarting: the neighbour went away after negotiating graceful
	// restart; its routes are kept (stale) until it is back or its
	// restart time passes.
	PeerRestarting bool `json:"peer_restarting,omitempty"`
	// HeldDown names why xrouter keeps the session down ("max-prefix").
	HeldDown string `json:"held_down,omitempty"`
	// Hint says why a session that is down may not come up, when the
	// kernel's counters suggest it (TCP-MD5 failures, see watchMD5).
	Hint string `json:"hint,omitempty"`
}

// Speaker is the embedded BGP speaker.
type Speaker struct {
	cfg  Config
	sink RouteSink
	log  *slog.Logger

	srv    *server.BgpServer
	cancel context.CancelFunc
	// watchCtx is the watchers' context, ended by Stop and Leave.
	watchCtx context.Context
	// fs follows the FlowSpec rules of neighbours (fswatch.go).
	fs *fsState
	// grpcSock is GoBGP's API socket when it is a Unix socket.
	grpcSock *grpcSocket

	// restarting: this start follows an earlier run whose routes are
	// still in the kernel (graceful restart, restarting speaker).
	restarting bool

	// opMu serialises what changes GoBGP's configuration after Start:
	// reloads, redistribution and max-prefix actions.
	opMu sync.Mutex
	// local is every prefix we announce, with the sources asking for it
	// ("config", "connected", "static"); owned under opMu.
	local map[netip.Prefix]map[string]bool
	// kernel is the latest set of redistributable kernel routes per
	// source, kept so that a reload can re-filter them; under opMu.
	kernel map[string][]netip.Prefix

	mu      sync.Mutex
	eor     map[eorKey]bool
	swept   bool
	stopped bool
	// limits is the max-prefix state per neighbour, under mu.
	limits map[netip.Addr]*limitState
	// hints says why a neighbour's session may not come up, under mu.
	hints map[netip.Addr]string

	// pic tracks which neighbours offer each prefix, for fast failover
	// (pic.go); nil when the sink does not protect routes.
	pic *picTable

	// scratch and nhBuf are the watcher callback's reused buffers (it
	// runs in one goroutine).
	scratch []decoded
	nhBuf   []netip.Addr
}

type eorKey struct {
	peer   netip.Addr
	family string
}

// New validates cfg and returns a speaker that is not running yet.
func New(cfg Config, sink RouteSink, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bgp config: %w", err)
	}
	if sink == nil {
		return nil, errors.New("bgp: nil route sink")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Speaker{
		cfg: cfg.withDefaults(), sink: sink, log: log, eor: map[eorKey]bool{},
		local: map[netip.Prefix]map[string]bool{}, kernel: map[string][]netip.Prefix{},
		limits: map[netip.Addr]*limitState{}, fs: newFSState(log), hints: map[netip.Addr]string{},
	}, nil
}

// SetRestarting marks this start as a restart after an earlier run (whose
// data plane and kernel routes are still there): with graceful restart on,
// the OPEN carries the Restart State and Forwarding State bits, so peers
// keep our routes until we send End-of-RIB, and we hold our updates until
// every peer sent its End-of-RIB (or bgp.graceful_restart.deferral_time).
// Call it before Start.
func (s *Speaker) SetRestarting(restarting bool) { s.restarting = restarting }

// config returns the current configuration.
func (s *Speaker) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Start starts GoBGP, installs the policies, watches best paths, adds the
// neighbours and announces the networks. GoBGP's goroutines and sockets live
// in the network namespace of the whole process, not of the calling thread:
// run the daemon inside the router's namespace (nsenter). On error,
// everything started is stopped again.
func (s *Speaker) Start(ctx context.Context) (err error) {
	if !DecoderHardened() {
		s.log.Warn("this binary was built without tools/gobgppatch (build with make): a malformed FlowSpec NLRI from any established neighbour makes GoBGP v3.37 panic and ends the daemon")
	}
	var opts []server.ServerOption
	if ps, ok := s.sink.(ProtectingSink); ok && ps.Protects() {
		s.pic = newPICTable(ps, s.cfg.Neighbors)
	}
	opts = append(opts, server.LoggerOption(&gobgpLogger{log: s.log.With("component", "gobgp"),
		onPrefixLimit: s.onPrefixLimit, onPeerUp: s.onPeerUp, onPeerDown: s.onPeerDown}))
	var sock *grpcSocket
	switch path := grpcSocketPath(s.cfg.GRPCAddress); {
	case path != "":
		if sock, err = prepareGRPCSocket(path, s.cfg.GRPCGroup); err != nil {
			return err
		}
		opts = append(opts, server.GrpcListenAddress(unixScheme+sock.pending.TmpPath))
	case s.cfg.GRPCAddress != "":
		opts = append(opts, server.GrpcListenAddress(s.cfg.GRPCAddress))
		if s.cfg.GRPCTLS.enabled() {
			o, err := grpcTLSOption(s.cfg.GRPCTLS)
			if err != nil {
				return err
			}
			opts = append(opts, o)
		}
	}
	s.srv = server.NewBgpServer(opts...)
	s.grpcSock = sock
	// Serve never returns, even after Stop: its goroutine idles until the
	// process exits, so a process should start one speaker.
	go s.srv.Serve()
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if sock != nil {
		if err := sock.publish(10 * time.Second); err != nil {
			return err
		}
	}

	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:              s.cfg.AS,
		RouterId:         s.cfg.RouterID,
		ListenPort:       s.cfg.ListenPort,
		ListenAddresses:  s.cfg.ListenAddresses,
		UseMultiplePaths: s.cfg.Multipath,
	}}); err != nil {
		return fmt.Errorf("starting bgp (as %d, router id %s, port %d): %w", s.cfg.AS, s.cfg.RouterID, s.cfg.ListenPort, err)
	}
	if err := s.installPolicies(ctx); err != nil {
		return err
	}

	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.watchCtx = wctx
	if err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
		Peer: &api.WatchEventRequest_Peer{},
	}, s.onEvent); err != nil {
		return fmt.Errorf("watching best paths: %w", err)
	}
	if s.pic != nil {
		// Its own watcher (goroutine and queue): the best paths do not
		// wait for it.
		if err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{
			Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
				{Type: api.WatchEventRequest_Table_Filter_POST_POLICY},
			}},
		}, func(r *api.WatchEventResponse) {
			if t := r.GetTable(); t != nil {
				s.pic.adjIn(t.Paths)
			}
		}); err != nil {
			return fmt.Errorf("watching received paths (fib.pic): %w", err)
		}
	}

	s.opMu.Lock()
	defer s.opMu.Unlock()
	if err := s.startFlowSpec(ctx, s.cfg); err != nil {
		return err
	}
	for _, n := range s.cfg.Neighbors {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerAPI(s.cfg, n, s.restarting)}); err != nil {
			return fmt.Errorf("adding neighbour %s (as %d): %w", n.Address, n.PeerAS, err)
		}
	}
	for _, n := range s.cfg.Networks {
		p, _ := parsePrefix(n) // validated
		if err := s.announce(ctx, p, sourceConfig); err != nil {
			return err
		}
	}
	go s.watchLimits(wctx)
	go s.watchMD5(wctx)
	s.log.Info("bgp started", "as", s.cfg.AS, "router_id", s.cfg.RouterID, "grpc_address", s.cfg.GRPCAddress,
		"listen_port", s.cfg.ListenPort, "neighbors", len(s.cfg.Neighbors), "networks", len(s.cfg.Networks),
		"graceful_restart", s.cfg.GracefulRestart.Enabled, "restarting", s.restarting, "fast_failover", s.pic != nil)
	return nil
}

// Sources of announced prefixes.
const (
	sourceConfig    = "config"
	sourceConnected = "connected"
	sourceStatic    = "static"
)

// announce adds source's wish to announce p; the first wish adds the path
// to GoBGP. Call with opMu held.
func (s *Speaker) announce(ctx context.Context, p netip.Prefix, source string) error {
	srcs := s.local[p]
	if srcs[source] {
		return nil
	}
	if len(srcs) == 0 {
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: localPath(p)}); err != nil {
			return fmt.Errorf("announcing network %s: %w", p, err)
		}
		srcs = map[string]bool{}
		s.local[p] = srcs
	}
	srcs[source] = true
	return nil
}

// withdraw removes source's wish; the last one withdraws the path. Call
// with opMu held.
func (s *Speaker) withdraw(ctx context.Context, p netip.Prefix, source string) error {
	srcs := s.local[p]
	if !srcs[source] {
		return nil
	}
	if len(srcs) == 1 {
		fam := FamilyIPv4Unicast
		if p.Addr().Is6() {
			fam = FamilyIPv6Unicast
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Family: familyAPI(fam), Path: localPath(p)}); err != nil {
			return fmt.Errorf("withdrawing network %s: %w", p, err)
		}
		delete(s.local, p)
		return nil
	}
	delete(srcs, source)
	return nil
}

// Announced returns the prefixes we announce, sorted.
func (s *Speaker) Announced() []netip.Prefix {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	out := make([]netip.Prefix, 0, len(s.local))
	for p := range s.local {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// Leave is the stop of a graceful restart: it stops handing paths to the
// sink but sends no NOTIFICATION, leaving the sessions to be closed by the
// kernel when the process exits. Peers that negotiated graceful restart
// take that as a restart and keep our routes for the restart time, while
// the kernel routes and the data plane keep forwarding; the next start
// (SetRestarting) resynchronises. It reports whether that applies: false
// when no neighbour has graceful restart, in which case it did nothing and
// Stop should be called.
func (s *Speaker) Leave() bool {
	cfg := s.config()
	gr := false
	for _, n := range cfg.Neighbors {
		gr = gr || n.grEnabled(cfg.GracefulRestart)
	}
	if !gr {
		return false
	}
	s.mu.Lock()
	if s.stopped || s.srv == nil {
		s.mu.Unlock()
		return true
	}
	s.stopped = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.log.Info("bgp: sessions left to close with the process, without NOTIFICATION (graceful restart): peers keep our routes while we restart",
		"restart_time", cfg.GracefulRestart.RestartTime)
	return true
}

// Stop closes the sessions (with a Cease NOTIFICATION) and stops GoBGP. The
// routes already handed to the sink are left to it: whether they stay in
// the kernel is the sink's decision.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped || s.srv == nil {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.srv.Stop()
	if s.grpcSock != nil {
		s.grpcSock.remove()
	}
	s.log.Info("bgp stopped")
}

// Peers returns the state of every neighbour, sorted by address.
func (s *Speaker) Peers(ctx context.Context) ([]PeerState, error) {
	if s.srv == nil {
		return nil, errors.New("bgp speaker not started")
	}
	var out []PeerState
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: false}, func(p *api.Peer) {
		ps := PeerState{State: "unknown"}
		if p.Conf != nil {
			ps.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
			ps.PeerAS = p.Conf.PeerAsn
		}
		if p.State != nil {
			ps.State = sessionState(p.State.SessionState)
		}
		if ps.State == "established" && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			ps.Uptime = time.Since(p.Timers.State.Uptime.AsTime()).Truncate(time.Second)
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				ps.Received += af.State.Received
				ps.Accepted += af.State.Accepted
			}
		}
		if gr := p.GracefulRestart; gr != nil {
			ps.GracefulRestart = gr.Enabled
			ps.PeerRestarting = gr.PeerRestarting
		}
		out = append(out, ps)
	})
	if err != nil {
		return nil, fmt.Errorf("listing peers: %w", err)
	}
	s.mu.Lock()
	for i := range out {
		if st := s.limits[out[i].Address]; st != nil && st.tripped {
			out[i].HeldDown = "max-prefix"
		}
		if out[i].State != "established" {
			out[i].Hint = s.hints[out[i].Address]
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b PeerState) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// sessionState names a GoBGP session state as BGP documents do.
func sessionState(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// onEvent runs in GoBGP's watcher goroutine: it must stay cheap. GoBGP
// calls it from one goroutine, so it may reuse the speaker's scratch
// buffers.
func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	if pe := r.GetPeer(); pe != nil {
		s.onPeer(pe)
		return
	}
	t := r.GetTable()
	if t == nil {
		return
	}
	s.onPaths(t.Paths)
}

func (s *Speaker) onPeer(pe *api.WatchEventResponse_PeerEvent) {
	if pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer == nil || pe.Peer.State == nil {
		return
	}
	st := pe.Peer.State
	s.log.Info("bgp neighbour state", "neighbor", st.NeighborAddress, "peer_as", st.PeerAsn,
		"state", sessionState(st.SessionState))
	if a, err := netip.ParseAddr(st.NeighborAddress); err == nil && st.SessionState == api.PeerState_ESTABLISHED {
		s.clearHint(a.Unmap())
	}
}

// onEOR records End-of-RIB; once every configured neighbour has sent it for
// every family it enabled, the sink may remove what an earlier run left.
func (s *Speaker) onEOR(p *api.Path) {
	addr, err := netip.ParseAddr(p.NeighborIp)
	if err != nil {
		return
	}
	fam := familyName(p.Family)
	if fam == "" {
		return
	}
	s.mu.Lock()
	s.eor[eorKey{addr.Unmap(), fam}] = true
	if s.cfg.GracefulRestart.Enabled || s.restarting {
		s.log.Info("End-of-RIB received", "neighbor", addr.Unmap(), "family", fam)
	}
	all := !s.swept
	for _, n := range s.cfg.Neighbors {
		a, _ := netip.ParseAddr(n.Address)
		for _, f := range n.Families {
			if !s.eor[eorKey{a, f}] {
				all = false
			}
		}
	}
	if all {
		s.swept = true
	}
	s.mu.Unlock()
	if all {
		s.log.Info("End-of-RIB from every neighbour: removing unconfirmed routes of an earlier run")
		s.sink.Sweep()
	}
}

// maxScratch bounds the decoded paths buffer kept between events.
const maxScratch = 1024

// decoded is what a watcher path means for the FIB.
type decoded struct {
	prefix netip.Prefix
	// nh is the next hop the path contributes, when valid.
	nh    netip.Addr
	valid bool
	// local: xrouter originated the path.
	local bool
	// peer is the neighbour the path came from.
	peer netip.Addr
}

// onPaths turns one watcher event into one wish per prefix, in the order
// the prefixes first appear. With multipath an event lists the whole new
// equal-cost set of a destination; without, its best path (or the
// withdrawal of the old one). A path we originated, or a next hop GoBGP
// marks invalid, installs nothing; a prefix whose paths install nothing is
// deleted. GoBGP sends one event per destination while it runs, so the
// common case (every path of the event for one prefix) is handled in the
// scratch buffers, without allocating; an event for several prefixes (the
// initial dump) is grouped by prefix first.
func (s *Speaker) onPaths(paths []*api.Path) {
	ds := s.scratch[:0]
	one := true
	for _, p := range paths {
		if p.Nlri == nil && p.Family != nil {
			s.onEOR(p) // End-of-RIB markers carry a family and no NLRI
			continue
		}
		if p.Family != nil && p.Family.Safi != api.Family_SAFI_UNICAST {
			continue // FlowSpec: followed per neighbour (flowspec.go)
		}
		d, ok := s.decode(p)
		if !ok {
			continue
		}
		one = one && (len(ds) == 0 || ds[0].prefix == d.prefix)
		ds = append(ds, d)
	}
	if cap(ds) <= maxScratch {
		s.scratch = ds[:0]
	} else {
		s.scratch = nil // a large dump: do not keep its buffer
	}
	if len(ds) == 0 {
		return
	}
	if one {
		s.wish(ds)
		return
	}
	byPrefix := make(map[netip.Prefix][]decoded, len(ds))
	order := make([]netip.Prefix, 0, len(ds))
	for _, d := range ds {
		if _, seen := byPrefix[d.prefix]; !seen {
			order = append(order, d.prefix)
		}
		byPrefix[d.prefix] = append(byPrefix[d.prefix], d)
	}
	for _, p := range order {
		s.wish(byPrefix[p])
	}
}

// wish hands the sink the wish for one prefix, from its paths in ds.
func (s *Speaker) wish(ds []decoded) {
	nh := s.nhBuf[:0]
	local := false
	var peer netip.Addr
	for _, d := range ds {
		local = local || d.local
		if d.valid {
			nh = append(nh, d.nh)
			peer = d.peer
		}
	}
	s.nhBuf = nh[:0]
	if local {
		nh = nil // our own network is best: never route it to a peer
	}
	switch {
	case s.pic != nil:
		s.pic.wish(ds[0].prefix, nh, peer)
	case len(nh) == 0:
		s.sink.Delete(ds[0].prefix)
	default:
		s.sink.Set(ds[0].prefix, nh)
	}
	s.fs.unicastChanged(ds[0].prefix)
}

// decode reads the prefix and next hop of a path; ok false (logged): the
// path is ignored altogether.
func (s *Speaker) decode(p *api.Path) (decoded, bool) {
	prefix, err := pathPrefix(p)
	if err != nil {
		s.log.Warn("bgp path ignored", "err", err)
		return decoded{}, false
	}
	d := decoded{prefix: prefix}
	if p.IsWithdraw || p.IsNexthopInvalid {
		return d, true
	}
	if isLocal(p) {
		d.local = true
		return d, true
	}
	nh, err := pathNexthop(p)
	if err != nil {
		s.log.Warn("bgp path ignored", "prefix", prefix, "neighbor", p.NeighborIp, "err", err)
		return d, true
	}
	d.nh, d.valid = nh, true
	if a, err := netip.ParseAddr(p.NeighborIp); err == nil {
		d.peer = a.Unmap()
	}
	return d, true
}

// isLocal reports whether xrouter originated the path: GoBGP gives local
// paths no source address.
func isLocal(p *api.Path) bool {
	a, err := netip.ParseAddr(p.NeighborIp)
	return err != nil || a.IsUnspecified()
}

// localPath is one announced network, with an unspecified next hop that
// GoBGP replaces with the session's local address.
func localPath(p netip.Prefix) *api.Path {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if p.Addr().Is4() {
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
		return &api.Path{Family: familyAPI(FamilyIPv4Unicast), Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}}
	}
	mp, _ := anypb.New(&api.MpReachNLRIAttribute{
		Family: familyAPI(FamilyIPv6Unicast), NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri},
	})
	return &api.Path{Family: familyAPI(FamilyIPv6Unicast), Nlri: nlri, Pattrs: []*anypb.Any{origin, mp}}
}

func familyAPI(f string) *api.Family {
	switch f {
	case FamilyIPv6Unicast:
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	case FamilyIPv4FlowSpec:
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_FLOW_SPEC_UNICAST}
	case FamilyIPv6FlowSpec:
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_FLOW_SPEC_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}

// familyName is the config name of a GoBGP family ("" for one xrouter
// does not configure).
func familyName(f *api.Family) string {
	if f == nil {
		return ""
	}
	v6 := f.Afi == api.Family_AFI_IP6
	switch {
	case f.Afi != api.Family_AFI_IP && !v6:
		return ""
	case f.Safi == api.Family_SAFI_UNICAST && v6:
		return FamilyIPv6Unicast
	case f.Safi == api.Family_SAFI_UNICAST:
		return FamilyIPv4Unicast
	case f.Safi == api.Family_SAFI_FLOW_SPEC_UNICAST && v6:
		return FamilyIPv6FlowSpec
	case f.Safi == api.Family_SAFI_FLOW_SPEC_UNICAST:
		return FamilyIPv4FlowSpec
	}
	return ""
}

// peerAPI is a neighbour as GoBGP wants it; restarting sets the Restart
// State bit for a neighbour with graceful restart.
func peerAPI(cfg Config, n Neighbor, restarting bool) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address,
			PeerAsn:         n.PeerAS,
			AuthPassword:    n.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(n.HoldTime / time.Second),
			KeepaliveInterval: uint64(n.KeepaliveInterval / time.Second),
			ConnectRetry:      5, // a peer that restarts is back quickly
		}},
		Transport: &api.Transport{
			LocalAddress: n.LocalAddress,
			PassiveMode:  n.Passive,
		},
	}
	if n.MultihopTTL > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: n.MultihopTTL}
	}
	if n.TTLSecurity.Enabled {
		p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: n.TTLSecurity.TTLMin}
	}
	gr := n.grEnabled(cfg.GracefulRestart)
	if gr {
		p.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(cfg.GracefulRestart.RestartTime / time.Second),
			DeferralTime:    uint32(cfg.GracefulRestart.DeferralTime / time.Second),
			LocalRestarting: restarting,
		}
	}
	for _, f := range n.Families {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: familyAPI(f), Enabled: true}}
		// GoBGP enforces the limit itself (a Cease NOTIFICATION as soon as
		// an UPDATE goes over); "warn" is ours, it only counts.
		if mp := n.MaxPrefixes; mp.Limit > 0 && mp.Action != MaxPrefixWarn {
			af.PrefixLimits = &api.PrefixLimit{Family: familyAPI(f), MaxPrefixes: mp.Limit}
		}
		if gr {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, af)
	}
	return p
}

// onPeerUp and onPeerDown run in GoBGP's FSM goroutines, from its "Peer
// Up" and "Peer Down" log lines: before GoBGP's server has handled the
// change (and, for a session loss, recomputed every best path).
func (s *Speaker) onPeerUp(neighbor string) {
	if a, err := netip.ParseAddr(neighbor); err == nil && s.pic != nil {
		s.pic.peerUp(a.Unmap())
	}
}

func (s *Speaker) onPeerDown(neighbor, reason string) {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return // our own stop: the routes stay as they are (see Stop)
	}
	if a, err := netip.ParseAddr(neighbor); err == nil && s.pic != nil {
		s.pic.peerDown(a.Unmap(), reason == "graceful-restart")
	}
}
