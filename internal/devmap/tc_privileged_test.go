package devmap

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestReadTCPrivileged: what readTC reports for each kind of tc setup on
// Linux 6.18: the kernel's default qdisc and an empty clsact are nothing;
// filters on either ingress qdisc are ingress; an operator's qdisc and
// clsact egress filters are egress (and the ingress qdisc's block is not
// mistaken for an egress hook); tcx programs count on their side.
func TestReadTCPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrtc-")
	n := 0
	for _, c := range []struct {
		name     string
		setup    [][]string
		in, eg   string // substrings of the one entry expected, "" for none
		tcxInput bool
	}{
		{name: "default qdisc"},
		{name: "empty clsact", setup: [][]string{{"qdisc", "add", "dev", "D", "clsact"}}},
		{name: "clsact ingress filter", setup: [][]string{{"qdisc", "add", "dev", "D", "clsact"},
			{"filter", "add", "dev", "D", "ingress", "protocol", "ip", "u32", "match", "ip", "dst", "10.0.0.1/32"}}, in: "filter u32"},
		{name: "ingress qdisc filter", setup: [][]string{{"qdisc", "add", "dev", "D", "ingress"},
			{"filter", "add", "dev", "D", "parent", "ffff:", "protocol", "ip", "u32", "match", "ip", "dst", "10.0.0.1/32"}}, in: "filter u32"},
		{name: "clsact egress filter", setup: [][]string{{"qdisc", "add", "dev", "D", "clsact"},
			{"filter", "add", "dev", "D", "egress", "protocol", "ip", "u32", "match", "ip", "dst", "10.0.0.1/32"}}, eg: "clsact egress filter u32"},
		{name: "tbf root", setup: [][]string{{"qdisc", "add", "dev", "D", "root", "tbf", "rate", "1mbit", "burst", "32k", "latency", "50ms"}}, eg: "qdisc tbf"},
		{name: "htb root", setup: [][]string{{"qdisc", "add", "dev", "D", "root", "handle", "1:", "htb"}}, eg: "qdisc htb 1:"},
		{name: "tcx ingress", tcxInput: true, in: "tcx program"},
	} {
		dev := fmt.Sprintf("vtc%d", n)
		n++
		t.Run(c.name, func(t *testing.T) {
			ns.IP(t, "link", "add", dev, "type", "veth", "peer", "name", dev+"p")
			ns.IP(t, "link", "set", dev, "up")
			for _, s := range c.setup {
				args := append([]string{"tc"}, s...)
				for i := range args {
					if args[i] == "D" {
						args[i] = dev
					}
				}
				ns.Run(t, args...)
			}
			var tc TC
			err := ns.Do(func() error {
				l, err := netlink.LinkByName(dev)
				if err != nil {
					return err
				}
				if c.tcxInput {
					prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
						Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
					if err != nil {
						return err
					}
					defer prog.Close()
					lk, err := link.AttachTCX(link.TCXOptions{Interface: l.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
					if err != nil {
						return err
					}
					defer lk.Close()
				}
				qs, err := allQdiscs()
				if err != nil {
					return err
				}
				tc, err = readTC(l, qs[l.Attrs().Index])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", tc)
			check := func(side string, got []string, want string) {
				if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || !strings.Contains(got[0], want)) {
					t.Errorf("%s = %q, want %q", side, got, want)
				}
			}
			check("ingress", tc.Ingress, c.in)
			check("egress", tc.Egress, c.eg)
		})
	}
}
