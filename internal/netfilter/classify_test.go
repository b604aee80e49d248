package netfilter

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestClassify(t *testing.T) {
	ch := func(family, hook string, rules int, policy string, mods ...func(*Chain)) Chain {
		c := Chain{Source: "nftables", Family: family, Table: "t", Name: hook, Hook: hook, Rules: rules, Policy: policy}
		for _, m := range mods {
			m(&c)
		}
		return c
	}
	on := func(devs ...string) func(*Chain) { return func(c *Chain) { c.Devices = devs } }
	dormant := func(c *Chain) { c.Dormant = true }
	managed := func(d string) bool { return d == "eth0" || d == "eth1" }
	for _, c := range []struct {
		name         string
		chain        Chain
		want4, want6 bool
	}{
		{"inet forward with a rule", ch("inet", "forward", 1, "accept"), true, true},
		{"ip forward with a rule", ch("ip", "forward", 3, "accept"), true, false},
		{"ip6 forward with a rule", ch("ip6", "forward", 1, "accept"), false, true},
		{"ip forward empty, policy drop", ch("ip", "forward", 0, "drop"), true, false},
		{"inet forward empty, policy accept", ch("inet", "forward", 0, "accept"), false, false},
		{"ip prerouting nat", ch("ip", "prerouting", 1, "accept"), true, false},
		{"ip postrouting masquerade", ch("ip", "postrouting", 1, "accept"), true, false},
		{"rules unreadable", ch("inet", "forward", -1, "accept"), true, true},
		{"inet input", ch("inet", "input", 5, "drop"), false, false},
		{"ip output", ch("ip", "output", 5, "drop"), false, false},
		{"dormant table", ch("inet", "forward", 2, "drop", dormant), false, false},
		{"bridge forward", ch("bridge", "forward", 2, "drop"), false, false},
		{"arp input", ch("arp", "input", 2, "drop"), false, false},
		{"netdev ingress on a port", ch("netdev", "ingress", 1, "accept", on("eth1")), true, true},
		{"netdev egress on a port", ch("netdev", "egress", 1, "accept", on("lo", "eth0")), true, true},
		{"netdev ingress elsewhere", ch("netdev", "ingress", 1, "accept", on("mgmt0")), false, false},
		{"netdev ingress, devices unknown", ch("netdev", "ingress", 1, "accept"), true, true},
		{"inet ingress on a port", ch("inet", "ingress", 1, "accept", on("eth0")), true, true},
		{"inet ingress elsewhere", ch("inet", "ingress", 1, "accept", on("mgmt0")), false, false},
		{"iptables-legacy FORWARD policy DROP", Chain{Source: "iptables-legacy", Family: "ip", Table: "filter", Name: "FORWARD", Hook: "forward", Policy: "drop"}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Classify([]Chain{c.chain}, managed)
			got4, got6 := r.Pass()
			if got4 != c.want4 || got6 != c.want6 {
				t.Errorf("pass ipv4=%v ipv6=%v, want %v %v", got4, got6, c.want4, c.want6)
			}
			if got4 && !strings.Contains(r.Reason(false), "chain "+c.chain.Name) {
				t.Errorf("reason %q does not name the chain", r.Reason(false))
			}
		})
	}
	if r := (Report{Err: "permission denied"}); r.Reason(true) == "" {
		t.Error("an unreadable ruleset gives no reason")
	} else if a, b := r.Pass(); !a || !b {
		t.Error("an unreadable ruleset must send both families to the kernel")
	}
	r := Classify([]Chain{ch("inet", "forward", 2, "accept"), ch("ip", "postrouting", 1, "accept")}, nil)
	if got, want := r.Reason(false), "table inet t chain forward (hook forward, 2 rules, policy accept) and 1 more"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
}

func TestModeValidate(t *testing.T) {
	for _, m := range []Mode{Respect, Bypass} {
		if err := m.Validate(); err != nil {
			t.Error(err)
		}
	}
	err := Mode("ignore").Validate()
	if err == nil || !strings.Contains(err.Error(), `"dataplane.netfilter"`) || !strings.Contains(err.Error(), "respect or bypass") {
		t.Errorf("error %v does not name the key and the values", err)
	}
	if len(Bypass.Warnings()) == 0 || len(Respect.Warnings()) != 0 {
		t.Error("only bypass warns")
	}
}

// legacyBlob builds an ip_tables table as the kernel returns it: per chain
// its rules then its policy (standard entries), an error entry last.
func legacyBlob(f legacyFamily, chains []struct {
	hook   int
	rules  int
	accept bool
}) (info, blob []byte) {
	entryLen := 112 // sizeof(struct ipt_entry)
	if f.family == "ip6" {
		entryLen = 168 // sizeof(struct ip6t_entry)
	}
	const targetLen = 40 // XT_ALIGN(struct xt_standard_target)
	entry := func(verdict int32) []byte {
		e := make([]byte, entryLen+targetLen)
		binary.NativeEndian.PutUint16(e[f.targetOff:], uint16(entryLen))
		binary.NativeEndian.PutUint16(e[f.nextOff:], uint16(entryLen+targetLen))
		binary.NativeEndian.PutUint16(e[entryLen:], targetLen)
		binary.NativeEndian.PutUint32(e[entryLen+targetHdrLen:], uint32(verdict))
		return e
	}
	info = make([]byte, getInfoLen)
	copy(info, "filter")
	valid := 0
	for _, c := range chains {
		valid |= 1 << c.hook
		binary.NativeEndian.PutUint32(info[tableNameLen+4+4*c.hook:], uint32(len(blob)))
		for range c.rules {
			blob = append(blob, entry(-1)...)
		}
		binary.NativeEndian.PutUint32(info[tableNameLen+4+4*numHooks+4*c.hook:], uint32(len(blob)))
		v := int32(-1)
		if c.accept {
			v = verdictAccept
		}
		blob = append(blob, entry(v)...)
	}
	blob = append(blob, entry(-1)...) // the error entry
	binary.NativeEndian.PutUint32(info[tableNameLen:], uint32(valid))
	binary.NativeEndian.PutUint32(info[getInfoLen-4:], uint32(len(blob)))
	return info, blob
}

func TestParseLegacyTable(t *testing.T) {
	type ch = struct {
		hook   int
		rules  int
		accept bool
	}
	for _, f := range legacyFamilies {
		info, blob := legacyBlob(f, []ch{
			{unix.NF_INET_LOCAL_IN, 4, false},
			{unix.NF_INET_FORWARD, 2, true},
			{unix.NF_INET_LOCAL_OUT, 0, true},
		})
		cs, err := parseLegacyTable(f, "filter", info, blob)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 || cs[0].Name != "FORWARD" || cs[0].Rules != 2 || cs[0].Policy != "accept" || cs[0].Family != f.family {
			t.Fatalf("%s: got %+v, want FORWARD with 2 rules, policy accept", f.family, cs)
		}
		info, blob = legacyBlob(f, []ch{{unix.NF_INET_FORWARD, 0, false}})
		cs, err = parseLegacyTable(f, "filter", info, blob)
		if err != nil || len(cs) != 1 || cs[0].Rules != 0 || cs[0].Policy != "drop" {
			t.Fatalf("%s: got %+v %v, want FORWARD empty, policy drop", f.family, cs, err)
		}
		if r := Classify(cs, nil); len(r.IPv4)+len(r.IPv6) != 1 {
			t.Errorf("%s: a FORWARD policy DROP counts for its family only: %+v", f.family, r)
		}
		if _, err := parseLegacyTable(f, "filter", info, blob[:len(blob)/3]); err == nil {
			t.Errorf("%s: a truncated blob parses", f.family)
		}
	}
}

func TestParseChainDevices(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_CHAIN_TABLE, "edge")
	ae.String(unix.NFTA_CHAIN_NAME, "in")
	ae.Nested(unix.NFTA_CHAIN_HOOK, func(h *netlink.AttributeEncoder) error {
		h.Uint32(unix.NFTA_HOOK_HOOKNUM, 0)
		h.Nested(nftaHookDevs, func(d *netlink.AttributeEncoder) error {
			d.String(nftaDeviceName, "eth1")
			d.String(nftaDeviceName, "eth0")
			return nil
		})
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	k, devs, err := parseChainDevices(append([]byte{unix.NFPROTO_NETDEV, 0, 0, 0}, b...))
	if err != nil {
		t.Fatal(err)
	}
	if k != (chainKey{unix.NFPROTO_NETDEV, "edge", "in"}) || strings.Join(devs, ",") != "eth0,eth1" {
		t.Errorf("got %+v %v", k, devs)
	}
}
