package nhcache

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// neighMsg is a neighbour event as the hub delivers it, decoded from the
// bytes the kernel sends.
func neighMsg(typ uint16, ifindex int32, state uint16, addr netip.Addr, lladdr []byte) (uint16, *netlink.Neigh) {
	b := make([]byte, unix.SizeofNdMsg)
	b[0] = unix.AF_INET
	if addr.Is6() {
		b[0] = unix.AF_INET6
	}
	binary.NativeEndian.PutUint32(b[4:], uint32(ifindex))
	binary.NativeEndian.PutUint16(b[8:], state)
	put := func(t uint16, v []byte) {
		a := make([]byte, (unix.SizeofRtAttr+len(v)+3)&^3)
		binary.NativeEndian.PutUint16(a, uint16(unix.SizeofRtAttr+len(v)))
		binary.NativeEndian.PutUint16(a[2:], t)
		copy(a[unix.SizeofRtAttr:], v)
		b = append(b, a...)
	}
	put(unix.NDA_DST, addr.AsSlice())
	if lladdr != nil {
		put(unix.NDA_LLADDR, lladdr)
	}
	n, err := netlink.NeighDeserialize(b)
	if err != nil {
		panic(err)
	}
	return typ, n
}

// TestNeighbourFlapFilter: state changes among the NUD_VALID states with the
// same link-layer address do not invalidate; a new address, leaving or
// entering NUD_VALID, and deletion of a usable entry do.
func TestNeighbourFlapFilter(t *testing.T) {
	v := &Invalidator{neigh: map[neighKey]neighVal{}}
	a := netip.MustParseAddr("10.0.0.2")
	mac1 := []byte{2, 0, 0, 0, 0, 1}
	mac2 := []byte{2, 0, 0, 0, 0, 2}
	for i, s := range []struct {
		typ    uint16
		state  uint16
		lladdr []byte
		bump   bool
	}{
		{unix.RTM_NEWNEIGH, unix.NUD_INCOMPLETE, nil, false}, // resolving: NO_NEIGH either way
		{unix.RTM_NEWNEIGH, unix.NUD_REACHABLE, mac1, true},  // usable now
		{unix.RTM_NEWNEIGH, unix.NUD_STALE, mac1, false},
		{unix.RTM_NEWNEIGH, unix.NUD_DELAY, mac1, false},
		{unix.RTM_NEWNEIGH, unix.NUD_PROBE, mac1, false},
		{unix.RTM_NEWNEIGH, unix.NUD_REACHABLE, mac1, false},
		{unix.RTM_NEWNEIGH, unix.NUD_REACHABLE, mac2, true}, // new lladdr
		{unix.RTM_NEWNEIGH, unix.NUD_STALE, mac2, false},
		{unix.RTM_NEWNEIGH, unix.NUD_FAILED, nil, true}, // leaves NUD_VALID
		{unix.RTM_NEWNEIGH, unix.NUD_INCOMPLETE, nil, false},
		{unix.RTM_NEWNEIGH, unix.NUD_PERMANENT, mac1, true},
		{unix.RTM_DELNEIGH, unix.NUD_PERMANENT, mac1, true},
		{unix.RTM_DELNEIGH, unix.NUD_REACHABLE, mac1, true}, // unknown entry deleted: maybe missed
	} {
		got := v.neighEvent(neighMsg(s.typ, 3, s.state, a, s.lladdr)) != ""
		if got != s.bump {
			t.Errorf("step %d (type %d state %#x lladdr %x): bump %v, want %v", i, s.typ, s.state, s.lladdr, got, s.bump)
		}
	}
	// Another interface's entry for the same address is another entry.
	if v.neighEvent(neighMsg(unix.RTM_NEWNEIGH, 4, unix.NUD_REACHABLE, a, mac1)) == "" {
		t.Error("new usable entry on another interface did not bump")
	}
}
