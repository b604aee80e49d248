package bgp

// Prefix-independent convergence (PIC): when a neighbour's session goes
// down, GoBGP recomputes the best path of each of its prefixes, one by
// one, and only then tells us; with full tables that takes seconds. The
// speaker therefore keeps, per unicast prefix, which established
// neighbours offer a usable path for it (after import policy, from
// GoBGP's post-policy adj-RIB-in watch), and hands the sink a backup next
// hop with each single-path best route. The sink (fib.Routes) puts such
// routes on a nexthop object per (next hop, backup) and, told of the
// session loss, repoints those objects to the backup: every protected
// prefix moves at once. GoBGP's own best paths follow and rewrite every
// route, so the table ends as GoBGP decides.
//
// The session loss is seen in GoBGP's "Peer Down" log line, which its FSM
// goroutine writes before the server handles the state change (the peer
// state event comes only after GoBGP has recomputed every best path).
//
// Safety: a backup is only a neighbour that is established, that offers
// the prefix now (as far as the adj-RIB-in watch has told us), and whose
// paths all carry one next hop; the primary's neighbour must also use a
// single next hop, so that "its session went down" is "its next hop is
// gone". A prefix without such a backup is left to GoBGP's withdrawal.
// The backup is the first configured neighbour (in configuration order)
// among those offering the prefix, not GoBGP's full decision process: with
// two upstreams they are the same; with more, the route may go to another
// valid path for the seconds until GoBGP's best path arrives.

import (
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
)

// ProtectingSink is a RouteSink that can fail routes over to a backup
// next hop at once (fib.Routes).
type ProtectingSink interface {
	RouteSink
	// Protects reports whether the sink does PIC (it is configured on,
	// and its FIB has what it takes).
	Protects() bool
	// SetProtected routes prefix via nexthop, failing over to backup
	// when Failover(nexthop) is called.
	SetProtected(prefix netip.Prefix, nexthop, backup netip.Addr)
	// Failover is told that the neighbour behind nexthop went away: with
	// repoint, the routes protected with nexthop as their next hop move
	// to their backup; in every case, nexthop is no backup any more.
	Failover(nexthop netip.Addr, repoint bool)
}

// maxPICPeers is how many neighbours the per-prefix masks track; a
// neighbour past it is never a backup.
const maxPICPeers = 32

// picPeer is what PIC knows of a neighbour.
type picPeer struct {
	addr netip.Addr
	// nh is the next hop of its paths per family (0: IPv4, 1: IPv6),
	// while they all have the same one (multiNH: they do not, since the
	// session came up).
	nh      [2]netip.Addr
	multiNH [2]bool
	up      bool
}

// fam is the index of an address's family in picPeer's arrays.
func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// picKey6 is an IPv6 prefix as a map key (17 bytes); an IPv4 prefix is
// a uint64 (address << 8 | length), so that the IPv4 table's map slots
// are 16 bytes.
type picKey6 struct {
	a    [16]byte
	bits uint8
}

// picEntry is one prefix: the neighbours offering it (bit i: peers[i]),
// the neighbour of its single best path (cand, -1: none), the same when
// that path is protectable (best: its next hop is its neighbour's only
// one, -1: not, or not known yet) and the backup handed to the sink (-1:
// none).
type picEntry struct {
	mask   uint32
	cand   int8
	best   int8
	backup int8
}

// picTable is the PIC state; its lock also orders the sink calls made
// from the two watchers (best paths, adj-RIB-in).
type picTable struct {
	mu     sync.Mutex
	sink   ProtectingSink
	peers  []picPeer
	byAddr map[netip.Addr]int
	// The prefixes' entries, by family: at a million prefixes, every
	// byte per entry is a megabyte.
	v4 map[uint64]picEntry
	v6 map[picKey6]picEntry
}

func newPICTable(sink ProtectingSink, neighbors []Neighbor) *picTable {
	t := &picTable{sink: sink, byAddr: map[netip.Addr]int{}, v4: map[uint64]picEntry{}, v6: map[picKey6]picEntry{}}
	for _, n := range neighbors {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			t.index(a.Unmap())
		}
	}
	return t
}

// get returns prefix's entry (a new one if it has none).
func (t *picTable) get(p netip.Prefix) picEntry {
	var e picEntry
	var ok bool
	if p.Addr().Is4() {
		a := p.Addr().As4()
		e, ok = t.v4[uint64(a[0])<<32|uint64(a[1])<<24|uint64(a[2])<<16|uint64(a[3])<<8|uint64(p.Bits())]
	} else {
		e, ok = t.v6[picKey6{p.Addr().As16(), uint8(p.Bits())}]
	}
	if !ok {
		e = picEntry{cand: -1, best: -1, backup: -1}
	}
	return e
}

// store stores prefix's entry, or deletes it when it holds nothing.
func (t *picTable) store(p netip.Prefix, e picEntry) {
	keep := e.mask != 0 || e.cand >= 0
	if p.Addr().Is4() {
		a := p.Addr().As4()
		k := uint64(a[0])<<32 | uint64(a[1])<<24 | uint64(a[2])<<16 | uint64(a[3])<<8 | uint64(p.Bits())
		if keep {
			t.v4[k] = e
		} else {
			delete(t.v4, k)
		}
		return
	}
	k := picKey6{p.Addr().As16(), uint8(p.Bits())}
	if keep {
		t.v6[k] = e
	} else {
		delete(t.v6, k)
	}
}

// index returns the neighbour's index, giving it one if there is room
// (-1: none). Called with mu held, or before the watchers start.
func (t *picTable) index(a netip.Addr) int {
	if i, ok := t.byAddr[a]; ok {
		return i
	}
	if len(t.peers) >= maxPICPeers {
		return -1
	}
	t.peers = append(t.peers, picPeer{addr: a})
	t.byAddr[a] = len(t.peers) - 1
	return len(t.peers) - 1
}

// backupFor picks the backup of a prefix whose best path comes from
// neighbour best (-1: none).
func (t *picTable) backupFor(e picEntry, best, f int) int8 {
	bnh := t.peers[best].nh[f]
	for j := range t.peers {
		p := &t.peers[j]
		if j == best || e.mask&(1<<j) == 0 || !p.up || p.multiNH[f] || !p.nh[f].IsValid() || p.nh[f] == bnh {
			continue
		}
		return int8(j)
	}
	return -1
}

// wish hands the sink the wish for one prefix from its best paths (a
// single valid one can be protected). Called by the best-path watcher.
func (t *picTable) wish(prefix netip.Prefix, nh []netip.Addr, peer netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(prefix)
	e.cand, e.best, e.backup = -1, -1, -1
	f := fam(prefix.Addr())
	if len(nh) == 1 {
		if i, ok := t.byAddr[peer]; ok {
			e.cand = int8(i)
			if p := t.peers[i]; p.up && !p.multiNH[f] && p.nh[f] == nh[0] {
				e.best = int8(i)
				e.backup = t.backupFor(e, i, f)
			}
		}
	}
	t.store(prefix, e)
	switch {
	case len(nh) == 0:
		t.sink.Delete(prefix)
	case e.backup >= 0:
		t.sink.SetProtected(prefix, nh[0], t.peers[e.backup].nh[f])
	default:
		t.sink.Set(prefix, nh)
	}
}

// adjIn records the paths of one post-policy adj-RIB-in event, and
// re-hands the sink the prefixes whose backup changed.
func (t *picTable) adjIn(paths []*api.Path) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range paths {
		if p.Nlri == nil || (p.Family != nil && p.Family.Safi != api.Family_SAFI_UNICAST) || isLocal(p) {
			continue
		}
		a, err := netip.ParseAddr(p.NeighborIp)
		if err != nil {
			continue
		}
		i := t.index(a.Unmap())
		if i < 0 {
			continue
		}
		prefix, err := pathPrefix(p)
		if err != nil {
			continue
		}
		e := t.get(prefix)
		offers := false
		f := fam(prefix.Addr())
		var nh netip.Addr
		if !p.IsWithdraw && !p.IsNexthopInvalid {
			if nh, err = pathNexthop(p); err == nil && fam(nh) == f {
				offers = true
				peer := &t.peers[i]
				switch {
				case !peer.nh[f].IsValid():
					peer.nh[f] = nh
				case peer.nh[f] != nh:
					peer.multiNH[f] = true
				}
			}
		}
		if offers {
			e.mask |= 1 << i
		} else {
			e.mask &^= 1 << i
		}
		if int(e.cand) == i {
			// The path of the best path's neighbour: the best path
			// itself, whose next hop the best-path watcher may have
			// seen before we knew the neighbour's.
			e.best = -1
			if q := t.peers[i]; offers && q.up && !q.multiNH[f] && q.nh[f] == nh {
				e.best = int8(i)
			} else {
				e.backup = -1 // the best path changes: GoBGP tells
			}
		}
		if e.best >= 0 && t.peers[e.best].up {
			if b := t.backupFor(e, int(e.best), f); b != e.backup {
				e.backup = b
				best := t.peers[e.best].nh[f]
				if b >= 0 {
					t.sink.SetProtected(prefix, best, t.peers[b].nh[f])
				} else {
					t.sink.Set(prefix, []netip.Addr{best})
				}
			}
		}
		t.store(prefix, e)
	}
}

// peerUp: neighbour a's session is established (a new session: its next
// hop is learnt again).
func (t *picTable) peerUp(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := t.index(a); i >= 0 {
		t.peers[i] = picPeer{addr: a, up: true}
	}
}

// peerDown: neighbour a's session went down. Unless it is a graceful
// restart (GoBGP keeps its paths), the protected routes via its next hop
// fail over; in every case it is no longer anyone's backup.
func (t *picTable) peerDown(a netip.Addr, graceful bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.byAddr[a]
	if !ok {
		return
	}
	p := &t.peers[i]
	wasUp := p.up
	p.up = false
	for f, nh := range p.nh {
		if !wasUp || !nh.IsValid() {
			continue
		}
		// Repoint only when the next hop dies with the session: no
		// other established neighbour has it (or may have it, among
		// several next hops), and GoBGP drops the paths (no graceful
		// restart).
		repoint := !graceful
		for j, q := range t.peers {
			if j != i && q.up && (q.nh[f] == nh || q.multiNH[f]) {
				repoint = false
			}
		}
		t.sink.Failover(nh, repoint)
	}
	bit := uint32(1) << i
	forget := func(e picEntry) (picEntry, bool) {
		if e.mask&bit == 0 && int(e.backup) != i {
			return e, false
		}
		e.mask &^= bit
		if int(e.backup) == i {
			// The sink took its objects out of protection; the next
			// wish for the prefix gives it a new backup.
			e.backup = -1
		}
		return e, true
	}
	for k, e := range t.v4 {
		if e, changed := forget(e); changed {
			if e.mask == 0 && e.cand < 0 {
				delete(t.v4, k)
			} else {
				t.v4[k] = e
			}
		}
	}
	for k, e := range t.v6 {
		if e, changed := forget(e); changed {
			if e.mask == 0 && e.cand < 0 {
				delete(t.v6, k)
			} else {
				t.v6[k] = e
			}
		}
	}
}
