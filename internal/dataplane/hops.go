package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
)

// HopSeen is a next hop the fast path forwarded to: the egress interface
// and the neighbour's MAC.
type HopSeen struct {
	Ifindex int
	Family  uint8 // AF_INET or AF_INET6
	MAC     net.HardwareAddr
}

// NextHopsSeen starts a new epoch of the fast path's table of next hops in
// use and returns those used since the previous call (distinct, any CPU).
// The first call only turns the table on and returns nothing. The table is
// direct-mapped (XR_HOP_SEEN_SLOTS slots per CPU): with more next hops in
// use than that, two that share a slot are reported only when they were the
// last in it, so a busy one may be missed for an epoch or two.
func (d *Dataplane) NextHopsSeen() ([]HopSeen, error) {
	old := d.hopEpoch
	next := old + 1
	if next == 0 {
		next = 1
	}
	if err := d.objs.XrHopEpoch.Put(uint32(0), next); err != nil {
		return nil, fmt.Errorf("setting the next-hop epoch: %w", err)
	}
	d.hopEpoch = next
	if old == 0 {
		return nil, nil
	}
	var per []fwdXrHopTable
	if err := d.objs.XrHopsSeen.Lookup(uint32(0), &per); err != nil {
		return nil, fmt.Errorf("reading the next hops in use: %w", err)
	}
	type key struct {
		ifindex uint32
		mac     [7]byte // and the family
	}
	seen := map[key]bool{}
	var out []HopSeen
	for _, t := range per {
		for _, s := range t.Slot {
			if s.Epoch != old && s.Epoch != next {
				continue
			}
			// The MAC's bytes as the program read them from the frame
			// (native byte order), then the family in bits 16-23.
			var b [8]byte
			binary.NativeEndian.PutUint32(b[0:], s.Mac[0])
			binary.NativeEndian.PutUint16(b[4:], uint16(s.Mac[1]))
			b[6] = uint8(s.Mac[1] >> 16)
			k := key{ifindex: s.Ifindex, mac: [7]byte(b[:7])}
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, HopSeen{Ifindex: int(s.Ifindex), Family: b[6], MAC: net.HardwareAddr(bytes.Clone(b[:6]))})
		}
	}
	return out, nil
}
