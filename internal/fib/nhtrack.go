package fib

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// NexthopTracker is implemented by a Writer that resolves next hops through
// the FIB and can tell when those resolutions may have changed. Routes uses
// it to move the routes that depend on a next hop when the route the next
// hop resolves through changes, without waiting for a resync.
type NexthopTracker interface {
	// Watch calls changed (from its own goroutine, possibly spuriously)
	// whenever a kernel route that is not ours, an address or a link
	// changes, until ctx is done. It turns resolution caching on.
	Watch(ctx context.Context, changed func()) error
	// Refresh resolves again every next hop resolved so far and returns
	// those whose resolution changed (moved, became reachable or
	// unreachable). It is called from the same goroutine as Apply.
	Refresh() []netip.Addr
}

// Watch follows the namespace's route, address and link changes through
// the namespace's event hub. Our own routes (protocol 186) are not
// delivered (the hub filters them on the raw header, in the kernel when
// no other subscriber wants them), so a full table written by us does not
// wake it a million times. Lost events count as a change.
func (k *KernelWriter) Watch(ctx context.Context, changed func()) error {
	// Nexthop events too: the kernel deletes objects (and every route on
	// them) itself when their device goes down or loses its carrier.
	sub, err := kernel.Subscribe(k.nsPath, kernel.Filter{Kinds: kernel.Route | kernel.Link | kernel.Addr | kernel.Nexthop, IgnoreProtocol: ProtocolBGP})
	if err != nil {
		return fmt.Errorf("subscribing to route changes: %w", err)
	}
	defer sub.Close()
	k.tracking.Store(true)
	defer k.tracking.Store(false)
	return followChanges(ctx, sub, func(ev kernel.Event) {
		// A new object changes no resolution (and is mostly our own);
		// a deleted one may be ours, deleted by the kernel.
		if ev.Kind == kernel.Nexthop && ev.Type == unix.RTM_NEWNEXTHOP {
			return
		}
		changed()
	})
}

// followChanges calls changed for every event of sub, Lost included (a
// change may have been missed: look again), until ctx is done or the
// subscription fails.
func followChanges(ctx context.Context, sub *kernel.Subscription, changed func(kernel.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.Events():
			if !ok {
				return fmt.Errorf("reading route changes: %w", sub.Err())
			}
			changed(ev)
		}
	}
}

// Refresh resolves every cached next hop again and returns those whose
// resolution changed.
func (k *KernelWriter) Refresh() []netip.Addr {
	k.syncObjects()
	var changed []netip.Addr
	for nh, old := range k.cache {
		r := k.resolveNow(nh)
		if r.same(old) {
			continue
		}
		k.cache[nh] = r
		// A next hop with an object moves by one replace of the object;
		// its routes are rewritten only when it comes back from
		// unresolved (they were removed meanwhile).
		if k.repoint(nh, r) && old.err == nil {
			continue
		}
		changed = append(changed, nh)
	}
	// Next hops whose device has its carrier back: their routes were
	// deleted with their object, or sit on groups short of them.
	for _, nh := range k.retryDown() {
		if !slices.Contains(changed, nh) {
			changed = append(changed, nh)
		}
	}
	return changed
}
