package fib

// Prefix-independent convergence (PIC). A route whose BGP best path has a
// single next hop, and for which another established peer offers a usable
// path, is put on a "protected" object keyed by (primary, backup): its
// content is the primary's resolution, as a plain object's would be. When
// the session of the peer behind the primary goes down, Failover replaces
// every protected object of that primary with the backup's resolution:
// one kernel operation per object, whatever the number of routes on it,
// before GoBGP has recomputed a single best path.
//
// A failed-over object is taken out of the protected table at once (no new
// route goes on it) and its routes are rewritten as GoBGP's new best paths
// arrive, onto plain objects (Routes treats every route on a failed-over
// object as out of date); it is pruned once unused. So the table ends as
// GoBGP's own decision. Prefixes without a backup stay where they are
// until GoBGP withdraws them: nothing is sent to a peer that did not offer
// the prefix.

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// pairKey is a protected object's (primary, backup).
type pairKey struct{ primary, backup netip.Addr }

// protectedObj returns the protected object of (primary, backup),
// creating it when there is none. Its content is primary's resolution.
func (k *KernelWriter) protectedObj(primary, backup netip.Addr) (*nhObj, error) {
	key := pairKey{primary, backup}
	if o := k.objs.protected[key]; o != nil {
		return o, nil
	}
	// The plain object proves the primary resolves (and follows it).
	plain, err := k.singleObj(primary)
	if err != nil {
		return nil, err
	}
	o := &nhObj{addr: primary, backup: backup, kernel: plain.kernel}
	if err := k.createObj(o); err != nil {
		return nil, err
	}
	k.objs.protected[key] = o
	return o, nil
}

// Failover is told that the peer behind BGP next hop nh went away. With
// repoint, every protected object whose primary is nh is replaced with its
// backup's resolution (one replace per object), and taken out of the
// protected table. Those whose backup is nh can no longer fail over and
// are taken out too (they keep forwarding via their primary). It returns
// the ids of the objects taken out: their routes are rewritten at their
// next wish (from GoBGP's new best paths). The new kernel next hops of
// those repointed are reported by Moved.
func (k *KernelWriter) Failover(nh netip.Addr, repoint bool) []uint32 {
	if k.objs == nil {
		return nil
	}
	var ids []uint32
	n := 0
	for key, o := range k.objs.protected {
		switch {
		case nh == key.backup:
			delete(k.objs.protected, key)
			ids = append(ids, o.id)
		case nh == key.primary && repoint:
			delete(k.objs.protected, key)
			r := k.resolveNow(key.backup)
			if r.err != nil {
				k.log.Warn("fast failover: backup next hop does not resolve; its routes wait for BGP", "next_hop", nh, "backup", key.backup, "err", r.err)
				continue
			}
			moved := &nhObj{id: o.id, addr: o.addr, kernel: r.one}
			if err := k.nhRequest(unix.RTM_NEWNEXTHOP, unix.NLM_F_REPLACE, moved); err != nil {
				k.log.Warn("fast failover: replacing nexthop object; its routes wait for BGP", "id", o.id, "next_hop", nh, "backup", key.backup, "err", err)
				continue
			}
			o.kernel = r.one
			o.failed = true
			k.objs.moved[o.id] = o.kernel
			ids = append(ids, o.id)
			n++
		}
	}
	if n > 0 {
		k.log.Info("fast failover: protected nexthop objects repointed to their backup", "next_hop", nh, "objects", n)
	}
	return ids
}

// repointProtected follows a change of addr's resolution in the protected
// objects forwarding via addr: their primary while not failed over, their
// backup after.
func (k *KernelWriter) repointProtected(addr netip.Addr, r resolution) {
	for _, o := range k.objs.byID {
		if !o.backup.IsValid() || (o.failed && o.backup != addr) || (!o.failed && o.addr != addr) {
			continue
		}
		moved := &nhObj{id: o.id, addr: o.addr, kernel: r.one}
		if err := k.nhRequest(unix.RTM_NEWNEXTHOP, unix.NLM_F_REPLACE, moved); err != nil {
			k.log.Warn("replacing protected nexthop object", "id", o.id, "next_hop", addr, "err", err)
			continue
		}
		o.kernel = r.one
		k.objs.moved[o.id] = o.kernel
	}
}
