package devmap

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The generic netlink family "netdev" (include/uapi/linux/netdev.h, Linux
// 6.3 and later): its dev-get command reports a device's XDP features.
const (
	netdevFamily          = "netdev"
	netdevCmdDevGet       = 1
	netdevADevIfindex     = 1
	netdevADevXDPFeatures = 3
	// NETDEV_XDP_ACT_NDO_XMIT: the driver can transmit frames that XDP
	// redirects to it (ndo_xdp_xmit). A veth advertises it only while
	// its peer runs an XDP program or has GRO on.
	netdevXDPActNdoXmit = 4
)

// xdpFeatures reads a device's NETDEV_A_DEV_XDP_FEATURES in the calling
// thread's namespace. ok is false when the kernel does not report them (no
// "netdev" family: a kernel older than 6.3).
func xdpFeatures(ifindex int) (features uint64, ok bool, err error) {
	fam, err := netdevFamilyID()
	if err != nil {
		return 0, false, nil
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(&nl.Genlmsg{Command: netdevCmdDevGet, Version: uint8(fam.Version)})
	req.AddData(nl.NewRtAttr(netdevADevIfindex, nl.Uint32Attr(uint32(ifindex))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, false, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return 0, false, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
		}
		for _, a := range attrs {
			if a.Attr.Type == netdevADevXDPFeatures && len(a.Value) == 8 {
				return binary.NativeEndian.Uint64(a.Value), true, nil
			}
		}
	}
	return 0, false, nil
}

// netdevFamilyID resolves the "netdev" family (its id is per boot, not per
// namespace, so it is asked once).
func netdevFamilyID() (*netlink.GenlFamily, error) {
	netdevOnce.Do(func() {
		netdevFam, netdevErr = netlink.GenlFamilyGet(netdevFamily)
		if netdevErr != nil {
			netdevErr = fmt.Errorf("generic netlink family %q: %w", netdevFamily, netdevErr)
		}
	})
	return netdevFam, netdevErr
}

var (
	netdevOnce sync.Once
	netdevFam  *netlink.GenlFamily
	netdevErr  error
)

// canXmitXDP says whether a device with these XDP features can be a
// redirect target.
func canXmitXDP(features uint64) bool { return features&netdevXDPActNdoXmit != 0 }
