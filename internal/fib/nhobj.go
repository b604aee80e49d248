package fib

// Kernel nexthop objects (`ip nexthop`): our routes reference a shared
// object by id (RTA_NH_ID) instead of carrying their gateways, the way
// FRR's zebra installs them. There is one object per BGP next hop in use
// (its content: the gateway and device the next hop resolves to) and one
// group object per distinct ECMP set of them. A change of a next hop's
// resolution (the route to an iBGP next hop moves, a gateway's device
// changes) is then one RTM_NEWNEXTHOP replace, whatever the number of
// routes via it, and the kernel moves every route at once.
//
// Ownership: our objects carry protocol ProtocolBGP and ids from
// nhIDFirst on. A restarted daemon adopts the objects of that protocol
// (their routes keep forwarding through them), reuses them for the same
// next hops, and deletes those no route of ours uses once the stale routes
// are swept. Objects of any other protocol are never touched; an id taken
// by one is skipped.
//
// Objects are created before the routes that use them and deleted only
// when no installed route uses them (Routes counts the references, Prune
// deletes): the kernel deletes every route using an object deleted under
// it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// nhIDFirst and nhIDLast bound the ids of our objects: a range of its own
// (0x186 for protocol 186) rather than the low ids `ip nexthop` users pick.
const (
	nhIDFirst = 0x18600000
	nhIDLast  = 0x186fffff
)

// sizeofNhmsg is struct nhmsg (family, scope, protocol, resvd, flags).
const sizeofNhmsg = 8

// nhObj is one object of ours: a single next hop (addr, resolved to nh) or
// a group of such objects.
type nhObj struct {
	id uint32
	// addr is the BGP next hop of a single object (the gateway for an
	// adopted one); the zero Addr for a group.
	addr netip.Addr
	// kernel are the next hops the kernel holds: one for a single object,
	// the members' for a group (sorted). Shared by every route's Result;
	// replaced (never modified) when the object changes.
	kernel  []Nexthop
	members []*nhObj // a group's
	// inGroups counts the groups containing a single object.
	inGroups int
	// backup is the backup next hop of a protected object (pic.go), the
	// zero Addr for any other; failed: it was repointed to the backup.
	backup netip.Addr
	failed bool
}

func (o *nhObj) group() bool { return !o.addr.IsValid() }

// nhObjects is KernelWriter's table of our objects; used by the worker
// goroutine only.
type nhObjects struct {
	byID   map[uint32]*nhObj
	single map[netip.Addr]*nhObj
	groups map[string]*nhObj // by groupKey of the members' addrs
	// protected are the protected objects not failed over (pic.go).
	protected map[pairKey]*nhObj
	next      uint32
	// moved are the objects whose kernel next hops changed in place since
	// Moved was last called.
	moved map[uint32][]Nexthop
	// down are next hops whose object the kernel deleted or refused
	// because its device lost the carrier; retried at every Refresh.
	down map[netip.Addr]bool
}

func newNhObjects() *nhObjects {
	return &nhObjects{byID: map[uint32]*nhObj{}, single: map[netip.Addr]*nhObj{},
		groups: map[string]*nhObj{}, protected: map[pairKey]*nhObj{}, next: nhIDFirst, moved: map[uint32][]Nexthop{}, down: map[netip.Addr]bool{}}
}

func groupKey(addrs []netip.Addr) string {
	b := make([]byte, 0, 16*len(addrs))
	for _, a := range addrs {
		x := a.As16()
		b = append(b, x[:]...)
	}
	return string(b)
}

// allocID returns an id of our range not used by an object of ours.
func (t *nhObjects) allocID() (uint32, error) {
	for range nhIDLast - nhIDFirst + 1 {
		id := t.next
		t.next++
		if t.next > nhIDLast {
			t.next = nhIDFirst
		}
		if _, used := t.byID[id]; !used {
			return id, nil
		}
	}
	return 0, errors.New("no free nexthop object id")
}

// ObjectWriter is a Writer that puts routes on shared kernel nexthop
// objects (KernelWriter). Routes counts the installed routes per object
// id (Result.NHID) and lets the writer delete the unused ones.
type ObjectWriter interface {
	// Prune deletes our objects that no installed route uses (used says
	// whether one does), keeping single objects a remaining group holds.
	Prune(used func(id uint32) bool)
	// Moved returns the objects whose next hops changed in place since
	// the last call (id → the next hops the kernel now holds), so that
	// the routes' recorded kernel next hops follow without a write.
	Moved() map[uint32][]Nexthop
}

// errObjectsRefused marks an object request the kernel refused because it
// has no nexthop objects (before Linux 5.3).
func objectsRefused(err error) bool {
	return errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EPROTONOSUPPORT) ||
		errors.Is(err, syscall.EAFNOSUPPORT)
}

// adoptObjects reads the kernel's nexthop objects and takes those of our
// protocol as ours. A kernel without nexthop objects refuses the dump:
// the writer then uses per-route gateways.
func (k *KernelWriter) adoptObjects() error {
	type raw struct {
		id      uint32
		gw      netip.Addr
		oif     int
		members []uint32
		other   bool // blackhole, encap, fdb: not one we would write
	}
	var found []raw
	body := make([]byte, sizeofNhmsg) // AF_UNSPEC: every family
	err := k.sock.dump(unix.RTM_GETNEXTHOP, body, func() { found = found[:0] }, func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWNEXTHOP || len(b) < sizeofNhmsg || b[2] != ProtocolBGP {
			return
		}
		var r raw
		attrs(b[sizeofNhmsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.NHA_ID:
				if len(v) == 4 {
					r.id = binary.NativeEndian.Uint32(v)
				}
			case unix.NHA_GATEWAY:
				if a, ok := netip.AddrFromSlice(v); ok {
					r.gw = a.Unmap()
				}
			case unix.NHA_OIF:
				if len(v) == 4 {
					r.oif = int(binary.NativeEndian.Uint32(v))
				}
			case unix.NHA_GROUP:
				for ; len(v) >= 8; v = v[8:] {
					r.members = append(r.members, binary.NativeEndian.Uint32(v))
				}
			case unix.NHA_BLACKHOLE, unix.NHA_ENCAP, nhaFDB:
				r.other = true
			}
		})
		if r.id != 0 {
			found = append(found, r)
		}
	})
	if err != nil {
		return err
	}
	t := newNhObjects()
	for _, r := range found {
		if r.other || r.members != nil || !r.gw.IsValid() {
			continue
		}
		o := &nhObj{id: r.id, addr: r.gw, kernel: []Nexthop{{Gateway: r.gw, LinkIndex: r.oif}}}
		t.byID[r.id] = o
		if _, dup := t.single[r.gw]; !dup {
			t.single[r.gw] = o
		}
	}
	var orphans []uint32
	for _, r := range found {
		if r.members == nil {
			if r.other || !r.gw.IsValid() {
				orphans = append(orphans, r.id)
			}
			continue
		}
		g := &nhObj{id: r.id}
		for _, m := range r.members {
			o := t.byID[m]
			if o == nil || o.group() {
				g = nil
				break
			}
			g.members = append(g.members, o)
		}
		if g == nil {
			orphans = append(orphans, r.id)
			continue
		}
		for _, o := range g.members {
			o.inGroups++
		}
		g.kernel = groupKernel(g.members)
		t.byID[r.id] = g
		slices.SortFunc(g.members, func(a, b *nhObj) int { return a.addr.Compare(b.addr) })
		addrs := make([]netip.Addr, len(g.members))
		for i, o := range g.members {
			addrs[i] = o.addr
		}
		if key := groupKey(addrs); t.groups[key] == nil && len(slices.Compact(slices.Clone(addrs))) == len(addrs) {
			t.groups[key] = g
		}
	}
	// Objects of ours we would never write (not made by this version):
	// taken as ours so that Prune deletes them when unused.
	for _, id := range orphans {
		t.byID[id] = &nhObj{id: id}
	}
	k.objs = t
	if len(found) > 0 {
		k.log.Info("found nexthop objects of an earlier run; keeping them while routes use them", "objects", len(found))
	}
	return nil
}

// groupKernel is what a group holds in the kernel: its members' next
// hops, sorted.
func groupKernel(members []*nhObj) []Nexthop {
	out := make([]Nexthop, 0, len(members))
	for _, o := range members {
		out = append(out, o.kernel...)
	}
	slices.SortFunc(out, func(a, b Nexthop) int {
		if c := a.Gateway.Compare(b.Gateway); c != 0 {
			return c
		}
		return a.LinkIndex - b.LinkIndex
	})
	return out
}

// singleObj returns the object of BGP next hop addr, creating it (through
// resolve) when there is none.
func (k *KernelWriter) singleObj(addr netip.Addr) (*nhObj, error) {
	r, known := k.cache[addr]
	if !known {
		// Resolved at least once per batch (or once while tracking), so
		// that Refresh follows the next hop of every object.
		r = k.resolve(addr)
	}
	if r.err != nil {
		return nil, r.err
	}
	if o := k.objs.single[addr]; o != nil {
		if !known && r.nh != o.kernel[0] {
			// Adopted from an earlier run, and the next hop moved
			// meanwhile.
			if !k.repoint(addr, r) {
				return nil, fmt.Errorf("next hop %s: its nexthop object %d holds %v and cannot be replaced", addr, o.id, o.kernel[0])
			}
		}
		return o, nil
	}
	if k.objs.down[addr] {
		// Refresh tries again at the next link or route change.
		return nil, fmt.Errorf("next hop %s: %w (its device has no carrier)", addr, ErrNextHopUnresolved)
	}
	o := &nhObj{addr: addr, kernel: r.one}
	if err := k.createObj(o); err != nil {
		if errors.Is(err, syscall.ENETDOWN) {
			// Unlike a route, an object is refused on a device
			// without carrier.
			k.objs.down[addr] = true
			return nil, fmt.Errorf("next hop %s: %w (%v)", addr, ErrNextHopUnresolved, err)
		}
		return nil, err
	}
	k.objs.single[addr] = o
	return o, nil
}

// retryDown tries again to create the objects of the next hops whose
// device had no carrier, and returns those that now have one: their routes
// (and the groups holding them) are to be written again.
func (k *KernelWriter) retryDown() []netip.Addr {
	if k.objs == nil || len(k.objs.down) == 0 {
		return nil
	}
	var back []netip.Addr
	for addr := range k.objs.down {
		delete(k.objs.down, addr)
		if _, err := k.singleObj(addr); err == nil {
			back = append(back, addr)
		}
	}
	return back
}

// groupObj returns the group object of the (sorted, distinct) BGP next
// hops addrs, creating it and its members when needed.
func (k *KernelWriter) groupObj(addrs []netip.Addr) (*nhObj, error) {
	key := groupKey(addrs)
	if g := k.objs.groups[key]; g != nil {
		return g, nil
	}
	g := &nhObj{}
	for _, a := range addrs {
		o, err := k.singleObj(a)
		if err != nil {
			return nil, err
		}
		g.members = append(g.members, o)
	}
	g.kernel = groupKernel(g.members)
	if err := k.createObj(g); err != nil {
		return nil, err
	}
	for _, o := range g.members {
		o.inGroups++
	}
	k.objs.groups[key] = g
	return g, nil
}

// createObj gives o a free id and creates it in the kernel (never
// replacing an object that is there: an id taken by someone else's object
// is skipped).
func (k *KernelWriter) createObj(o *nhObj) error {
	for range 64 {
		id, err := k.objs.allocID()
		if err != nil {
			return err
		}
		o.id = id
		err = k.nhRequest(unix.RTM_NEWNEXTHOP, unix.NLM_F_CREATE|unix.NLM_F_EXCL, o)
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating nexthop object %d: %w", id, err)
		}
		k.objs.byID[id] = o
		return nil
	}
	return errors.New("creating nexthop object: every id tried is taken")
}

// nhRequest sends one nexthop request for o and returns the kernel's
// answer.
func (k *KernelWriter) nhRequest(typ uint16, flags uint16, o *nhObj) error {
	errs := []error{nil}
	k.sock.exchangeFn(1, func(b []byte, _ int, seq uint32) []byte {
		return appendNexthopMsg(b, typ, flags, o, seq)
	}, errs)
	return errs[0]
}

// appendNexthopMsg appends an RTM_NEWNEXTHOP (o's content) or an
// RTM_DELNEXTHOP (o's id only).
func appendNexthopMsg(b []byte, typ, flags uint16, o *nhObj, seq uint32) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set at the end
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	family := byte(unix.AF_UNSPEC)
	if typ == unix.RTM_NEWNEXTHOP && !o.group() {
		family = unix.AF_INET
		if o.kernel[0].Gateway.Is6() {
			family = unix.AF_INET6
		}
	}
	// struct nhmsg: family, scope (must be 0), protocol (0 in a
	// delete), resvd, flags.
	proto := byte(ProtocolBGP)
	if typ == unix.RTM_DELNEXTHOP {
		proto = 0
	}
	b = append(b, family, 0, proto, 0)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = appendAttrU32(b, unix.NHA_ID, o.id)
	if typ == unix.RTM_NEWNEXTHOP {
		if o.group() {
			grp := make([]byte, 0, 8*len(o.members))
			for _, m := range o.members {
				// struct nexthop_grp: id, weight-1, weight_high, resvd2.
				grp = binary.NativeEndian.AppendUint32(grp, m.id)
				grp = append(grp, 0, 0, 0, 0)
			}
			b = appendAttr(b, unix.NHA_GROUP, grp)
		} else {
			nh := o.kernel[0]
			b = appendAttr(b, unix.NHA_GATEWAY, nh.Gateway.AsSlice())
			b = appendAttrU32(b, unix.NHA_OIF, uint32(nh.LinkIndex))
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// objectFor returns the object an op's route goes on, creating what is
// missing.
func (k *KernelWriter) objectFor(op Op) (*nhObj, error) {
	for _, nh := range op.NextHops {
		if nh.Is4() != op.Prefix.Addr().Is4() {
			return nil, fmt.Errorf("route %s: next hop %s is of the other family", op.Prefix, nh)
		}
	}
	var o *nhObj
	var err error
	switch {
	case len(op.NextHops) == 1 && op.Backup.IsValid() && op.Backup != op.NextHops[0] &&
		op.Backup.Is4() == op.Prefix.Addr().Is4():
		o, err = k.protectedObj(op.NextHops[0], op.Backup)
	case len(op.NextHops) == 1:
		o, err = k.singleObj(op.NextHops[0])
	default:
		o, err = k.groupObj(op.NextHops)
	}
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", op.Prefix, err)
	}
	return o, nil
}

// Prune deletes the objects of ours no installed route uses: unused groups
// first, then the single objects neither a route nor a remaining group
// uses. A failed delete is logged and tried again at the next Prune.
func (k *KernelWriter) Prune(used func(id uint32) bool) {
	if k.objs == nil {
		return
	}
	var groups, singles []*nhObj
	for id, o := range k.objs.byID {
		if used(id) {
			continue
		}
		if o.members != nil {
			groups = append(groups, o)
		} else if o.inGroups == 0 {
			singles = append(singles, o)
		}
	}
	deleted := 0
	for _, g := range groups {
		if k.deleteObj(g) {
			deleted++
			for _, m := range g.members {
				m.inGroups--
				// A member the kernel deleted is no longer ours: its id
				// may be another object's now.
				if m.inGroups == 0 && !used(m.id) && k.objs.byID[m.id] == m {
					singles = append(singles, m)
				}
			}
		}
	}
	for _, o := range singles {
		if k.deleteObj(o) {
			deleted++
		}
	}
	if deleted > 0 {
		k.log.Debug("deleted unused nexthop objects", "objects", deleted, "left", len(k.objs.byID))
	}
}

// deleteObj deletes o from the kernel and the table; false if the kernel
// refused (it stays, and is tried again later).
func (k *KernelWriter) deleteObj(o *nhObj) bool {
	err := k.nhRequest(unix.RTM_DELNEXTHOP, 0, o)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		k.log.Warn("deleting unused nexthop object", "id", o.id, "err", err)
		return false
	}
	delete(k.objs.byID, o.id)
	delete(k.objs.moved, o.id)
	switch {
	case o.group():
		for key, g := range k.objs.groups {
			if g == o {
				delete(k.objs.groups, key)
			}
		}
	case o.backup.IsValid():
		if key := (pairKey{o.addr, o.backup}); k.objs.protected[key] == o {
			delete(k.objs.protected, key)
		}
	case k.objs.single[o.addr] == o:
		delete(k.objs.single, o.addr)
	}
	return true
}

// Moved returns and forgets the objects changed in place since the last
// call.
func (k *KernelWriter) Moved() map[uint32][]Nexthop {
	if k.objs == nil || len(k.objs.moved) == 0 {
		return nil
	}
	m := k.objs.moved
	k.objs.moved = map[uint32][]Nexthop{}
	return m
}

// repoint replaces the content of addr's object with its new resolution
// r: one kernel operation moves every route using it (or a group holding
// it). It returns false when there is no such object or the kernel refused
// (the dependent routes are then rewritten one by one).
func (k *KernelWriter) repoint(addr netip.Addr, r resolution) bool {
	if k.objs == nil || r.err != nil {
		return false
	}
	o := k.objs.single[addr]
	if o == nil {
		return false
	}
	moved := &nhObj{id: o.id, addr: o.addr, kernel: r.one}
	if err := k.nhRequest(unix.RTM_NEWNEXTHOP, unix.NLM_F_REPLACE, moved); err != nil {
		k.log.Warn("replacing nexthop object; rewriting its routes instead", "id", o.id, "next_hop", addr, "err", err)
		return false
	}
	o.kernel = r.one
	k.objs.moved[o.id] = o.kernel
	k.repointProtected(addr, r)
	for _, g := range k.objs.byID {
		if slices.Contains(g.members, o) {
			g.kernel = groupKernel(g.members)
			k.objs.moved[g.id] = g.kernel
		}
	}
	return true
}

// syncObjects forgets the objects of ours the kernel no longer holds: it
// deletes an object, and the routes on it, when the object's device goes
// down or loses its carrier, and takes it out of the groups holding it
// (whose routes keep forwarding through the other members). Their next
// hops wait in down until retryDown succeeds; then their routes are
// written again, onto a new object (and new full groups).
func (k *KernelWriter) syncObjects() {
	if k.objs == nil || len(k.objs.byID) == 0 {
		return
	}
	have := map[uint32]bool{}
	body := make([]byte, sizeofNhmsg)
	err := k.sock.dump(unix.RTM_GETNEXTHOP, body, func() { clear(have) }, func(typ uint16, b []byte) {
		if typ != unix.RTM_NEWNEXTHOP || len(b) < sizeofNhmsg || b[2] != ProtocolBGP {
			return
		}
		attrs(b[sizeofNhmsg:], func(t uint16, v []byte) {
			if t == unix.NHA_ID && len(v) == 4 {
				have[binary.NativeEndian.Uint32(v)] = true
			}
		})
	})
	if err != nil {
		k.log.Warn("listing nexthop objects", "err", err)
		return
	}
	var addrs []netip.Addr
	for id, o := range k.objs.byID {
		if have[id] {
			continue
		}
		delete(k.objs.byID, id)
		delete(k.objs.moved, id)
		if o.group() {
			for key, g := range k.objs.groups {
				if g == o {
					delete(k.objs.groups, key)
				}
			}
			for _, m := range o.members {
				m.inGroups--
			}
			continue
		}
		if o.backup.IsValid() {
			// Its routes went with it; they are written again (onto a
			// new object) with the next hop below.
			if key := (pairKey{o.addr, o.backup}); k.objs.protected[key] == o {
				delete(k.objs.protected, key)
			}
		}
		if k.objs.single[o.addr] == o {
			delete(k.objs.single, o.addr)
		}
		k.objs.down[o.addr] = true
		addrs = append(addrs, o.addr)
		// The kernel took it out of the groups holding it: those now
		// hold fewer next hops than their key says. Their routes move
		// to a new group when written again; the old ones are pruned
		// once unused.
		for key, g := range k.objs.groups {
			if slices.Contains(g.members, o) {
				delete(k.objs.groups, key)
			}
		}
	}
	if len(addrs) > 0 {
		k.log.Info("the kernel deleted nexthop objects of ours with the routes on them (their device went down); they come back with the carrier", "next_hops", addrs)
	}
}

// objectKernel is the next hops the kernel holds for a route on object
// id, if it is ours.
func (k *KernelWriter) objectKernel(id uint32) ([]Nexthop, bool) {
	if k.objs == nil {
		return nil, false
	}
	o := k.objs.byID[id]
	if o == nil || o.kernel == nil {
		return nil, false
	}
	return o.kernel, true
}
