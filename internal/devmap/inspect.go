package devmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/ethtool"
	"github.com/xrouter/xrouter/internal/kernel"
)

// Status is one pinned interface as the system shows it, whether the daemon
// runs or not.
type Status struct {
	Name     string `json:"name"`
	Index    int    `json:"ifindex"`
	MAC      string `json:"mac"`
	Mode     string `json:"mode"`
	ProgID   uint32 `json:"prog_id"`
	Up       bool   `json:"up"`
	Egress   bool   `json:"egress"`
	VethPeer string `json:"veth_peer,omitempty"`
	// TC is what tc does here that the fast path leaves to the kernel.
	TC TC `json:"tc"`
	// NoXDPXmit: the device cannot transmit XDP frames; it is no redirect
	// target.
	NoXDPXmit bool     `json:"no_xdp_xmit,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Inspect reports the interfaces with a link pinned under pinPath. It reads
// only; it needs to run in the router's network namespace.
func Inspect(pinPath string) ([]Status, error) {
	dir := LinksDir(pinPath)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var devmap *ebpf.Map
	if m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, dataplane.DevmapMapName), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
		devmap = m
		defer m.Close()
	}
	qdiscs, qerr := allQdiscs()
	var out []Status
	for _, e := range entries {
		idx, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s := Status{Index: idx, Name: "?", Mode: "none"}
		if lk, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("pinned link unreadable: %v", err))
		} else {
			if info, err := lk.Info(); err == nil {
				s.ProgID = uint32(info.Program)
			}
			_ = lk.Close()
		}
		if devmap != nil {
			var v uint32
			s.Egress = devmap.Lookup(uint32(idx), &v) == nil
		}
		l, err := netlink.LinkByIndex(idx)
		if err != nil {
			s.Warnings = append(s.Warnings, "interface is gone; the pin is stale (the next `xrouter run` removes it)")
			out = append(out, s)
			continue
		}
		s.Name = l.Attrs().Name
		s.MAC = l.Attrs().HardwareAddr.String()
		s.Mode = modeOf(l)
		s.Up = up(l)
		if qerr != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("cannot read tc state: %v", qerr))
		} else if tc, err := readTC(l, qdiscs[idx]); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("cannot read tc state: %v", err))
		} else {
			s.TC = tc
		}
		if len(s.TC.Ingress) > 0 {
			s.Notes = append(s.Notes, "tc on ingress ("+strings.Join(s.TC.Ingress, ", ")+"): packets arriving here go to the kernel (outcome tc_ingress)")
		}
		if len(s.TC.Egress) > 0 {
			s.Notes = append(s.Notes, "tc on egress ("+strings.Join(s.TC.Egress, ", ")+"): not a redirect target, packets routed here go to the kernel (outcome tc_egress)")
		}
		if f, ok, err := xdpFeatures(idx); err == nil && ok {
			s.NoXDPXmit = !canXmitXDP(f)
		}
		_, isVeth := l.(*netlink.Veth)
		if s.NoXDPXmit && !isVeth {
			// (A veth's peer check below says why and what to do.)
			s.Warnings = append(s.Warnings, fmt.Sprintf("interface cannot transmit XDP frames (no ndo_xdp_xmit; attached in %s mode): not a redirect target, packets routed here go to the kernel (outcome no_xdp_xmit)", s.Mode))
		}
		if s.Up && !s.Egress && len(s.TC.Egress) == 0 && !s.NoXDPXmit {
			s.Warnings = append(s.Warnings, "interface is up but not in the devmap: packets routed to it take the slow path")
		}
		if v, ok := l.(*netlink.Veth); ok {
			peer, warns := checkVethPeer(v)
			s.VethPeer = peer
			s.Warnings = append(s.Warnings, warns...)
		}
		out = append(out, s)
	}
	return out, nil
}

// checkVethPeer finds the other end of a veth and reports whether frames
// redirected into this end can arrive: the peer must run an XDP program or
// have GRO on, or redirected frames vanish without a counter moving.
func checkVethPeer(v *netlink.Veth) (peer string, warnings []string) {
	peer, w, csum := checkVethPeerXDP(v)
	for _, x := range []string{csum, w} {
		if x != "" {
			warnings = append(warnings, x)
		}
	}
	return peer, warnings
}

func checkVethPeerXDP(v *netlink.Veth) (peer, warning, csumWarning string) {
	peerIdx, err := netlink.VethPeerIndex(v)
	if err != nil {
		return "?", fmt.Sprintf("cannot find the veth peer: %v", err), ""
	}
	nsid := v.Attrs().NetNsID
	h, nsName, closeNs, err := peerHandle(nsid)
	if err != nil {
		return fmt.Sprintf("ifindex %d in netns id %d", peerIdx, nsid), fmt.Sprintf("cannot check the veth peer: %v", err), ""
	}
	defer closeNs()
	pl, err := h.LinkByIndex(peerIdx)
	if err != nil {
		return fmt.Sprintf("ifindex %d", peerIdx), fmt.Sprintf("cannot read the veth peer: %v", err), ""
	}
	peer = pl.Attrs().Name
	if nsName != "" {
		peer += "@" + nsName
	}
	if on, err := ethtoolGet(nsid, nsName, pl.Attrs().Name, ethtool.GetTxCsum); err == nil && on {
		// The peer hands its packets over with a partial checksum
		// (CHECKSUM_PARTIAL); kernel forwarding keeps that state, XDP turns
		// the skb into a bare frame and loses it, so the receiver drops the
		// packet with a checksum error.
		csumWarning = fmt.Sprintf("veth peer %s has TX checksum offload on: its UDP/TCP packets leave the fast path with incomplete checksums and are dropped by the receiver (turn it off: ethtool -K %s tx off)", peer, pl.Attrs().Name)
	}
	if x := pl.Attrs().Xdp; x != nil && x.Attached {
		return peer, "", csumWarning
	}
	if gro, err := vethGRO(nsid, nsName, pl.Attrs().Name); err == nil && gro {
		return peer, "", csumWarning
	}
	return peer, fmt.Sprintf("veth peer %s has no XDP program and GRO off: %s cannot take XDP frames, so it is no redirect target and packets routed to it take the slow path (attach an XDP program to the peer or enable GRO on it)", peer, v.Attrs().Name), csumWarning
}

// peerHandle opens a netlink handle in the namespace a link's netnsid names,
// by matching the ids of the namespaces in /run/netns. nsid < 0 means ours.
func peerHandle(nsid int) (*netlink.Handle, string, func(), error) {
	if nsid < 0 {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, "", nil, err
		}
		return h, "", h.Close, nil
	}
	name, ns, err := findNetns(nsid)
	if err != nil {
		return nil, "", nil, err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, "", nil, err
	}
	return h, name, func() { h.Close(); ns.Close() }, nil
}

func findNetns(nsid int) (string, netns.NsHandle, error) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		ns, err := netns.GetFromPath(filepath.Join("/run/netns", e.Name()))
		if err != nil {
			continue
		}
		id, err := netlink.GetNetNsIdByFd(int(ns))
		if err == nil && id == nsid {
			return e.Name(), ns, nil
		}
		ns.Close()
	}
	return "", 0, fmt.Errorf("peer namespace (netnsid %d) is not named in /run/netns", nsid)
}

// vethGRO asks the kernel whether GRO is on for an interface.
func vethGRO(nsid int, nsName, ifname string) (bool, error) {
	return ethtoolGet(nsid, nsName, ifname, ethtool.GetGRO)
}

// ethtoolGet reads one ethtool_value setting of an interface, from a socket
// opened inside its namespace.
func ethtoolGet(nsid int, nsName, ifname string, cmd uint32) (bool, error) {
	var on bool
	path := ""
	if nsid >= 0 && nsName != "" {
		path = filepath.Join("/run/netns", nsName)
	}
	err := kernel.InNamespace(path, func() error {
		var err error
		on, err = ethtool.Get(ifname, cmd)
		return err
	})
	return on, err
}

// EnsureBpffs makes sure pinPath lies on a bpffs, mounting one at
// /sys/fs/bpf if that is where pinPath points and nothing is mounted there.
func EnsureBpffs(pinPath string) error {
	if onBpffs(pinPath) {
		return nil
	}
	const std = "/sys/fs/bpf"
	if pinPath != std && !strings.HasPrefix(pinPath, std+"/") {
		return fmt.Errorf("pin path %s is not on a bpffs", pinPath)
	}
	if err := unix.Mount("bpf", std, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs at %s: %w", std, err)
	}
	return nil
}

func onBpffs(path string) bool {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil {
			return st.Type == unix.BPF_FS_MAGIC
		}
		if p == "/" {
			return false
		}
	}
}

// Detach removes everything an earlier run pinned under pinPath: the XDP
// links (so the program leaves the interfaces) and the maps. For operators
// who stopped the daemon and want plain kernel forwarding back.
func Detach(pinPath string) ([]int, error) {
	var detached []int
	dir := LinksDir(pinPath)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if lk, err := link.LoadPinnedLink(path, nil); err == nil {
			_ = lk.Unpin()
			_ = lk.Close()
		} else if err := os.Remove(path); err != nil {
			return detached, fmt.Errorf("removing %s: %w", path, err)
		}
		if idx, err := strconv.Atoi(e.Name()); err == nil {
			detached = append(detached, idx)
		}
	}
	_ = os.Remove(dir)
	for _, name := range dataplane.PinnedMapNames() {
		if err := os.Remove(filepath.Join(pinPath, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return detached, fmt.Errorf("removing pinned map %s: %w", name, err)
		}
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return detached, fmt.Errorf("removing %s: %w", pinPath, err)
	}
	return detached, nil
}
