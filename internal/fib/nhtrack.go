package fib

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

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

// Watch subscribes to the namespace's route, address and link changes. Our
// own routes (protocol 186) are filtered out in the kernel by a socket
// filter, so a full table written by us does not wake it a million times.
func (k *KernelWriter) Watch(ctx context.Context, changed func()) error {
	fd, err := subscribeNotOurs(k.nsPath, unix.RTMGRP_IPV4_ROUTE|unix.RTMGRP_IPV6_ROUTE|unix.RTMGRP_LINK|
		unix.RTMGRP_IPV4_IFADDR|unix.RTMGRP_IPV6_IFADDR)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	k.tracking.Store(true)
	defer k.tracking.Store(false)
	return readChanges(ctx, fd, changed)
}

// subscribeNotOurs opens a socket in the namespace at nsPath (empty: the
// calling thread's) bound to the rtnetlink groups, with notifications of
// our own routes filtered out and a short receive timeout for readChanges.
func subscribeNotOurs(nsPath string, groups uint32) (int, error) {
	fd, err := socketIn(nsPath, unix.NETLINK_ROUTE, groups)
	if err != nil {
		return -1, fmt.Errorf("subscribing to route changes: %w", err)
	}
	if err := attachNotOursFilter(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("subscribing to route changes: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("subscribing to route changes: %w", err)
	}
	return fd, nil
}

// readChanges calls changed for every notification read from fd until ctx
// is done.
func readChanges(ctx context.Context, fd int, changed func()) error {
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		_, _, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENOBUFS):
			// A change, or so many that some were dropped: either way,
			// look again.
			changed()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default:
			return fmt.Errorf("reading route changes: %w", err)
		}
	}
	return nil
}

// attachNotOursFilter drops RTM_NEWROUTE and RTM_DELROUTE notifications of
// protocol ProtocolBGP (each notification is one message in its own skb).
func attachNotOursFilter(fd int) error {
	// nlmsg_type is host-endian; classic BPF loads bytes, so pick the byte
	// that holds the (small) type value.
	typeOff := uint32(4)
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big endian
		typeOff = 5
	}
	const protoOff = unix.SizeofNlMsghdr + 5 // rtmsg.rtm_protocol
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: typeOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.RTM_NEWROUTE},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 2, K: unix.RTM_DELROUTE},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: protoOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: ProtocolBGP},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // keep
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // drop
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: unsafe.SliceData(prog)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attaching socket filter: %w", err)
	}
	return nil
}

// followChanges calls changed for every event of sub, Lost included (a
// change may have been missed: look again), until ctx is done or the
// subscription fails.
func followChanges(ctx context.Context, sub *kernel.Subscription, changed func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-sub.Events():
			if !ok {
				return fmt.Errorf("reading route changes: %w", sub.Err())
			}
			changed()
		}
	}
}

// Refresh resolves every cached next hop again and returns those whose
// resolution changed.
func (k *KernelWriter) Refresh() []netip.Addr {
	var changed []netip.Addr
	for nh, old := range k.cache {
		r := k.resolveNow(nh)
		if r.same(old) {
			continue
		}
		changed = append(changed, nh)
		k.cache[nh] = r
	}
	return changed
}
