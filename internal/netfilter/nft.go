package netfilter

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink attribute numbers the packages above do not name (linux/
// netfilter/nf_tables.h): a chain hook's device list and its entries.
const (
	nftaHookDevs   = 4 // NFTA_HOOK_DEVS
	nftaDeviceName = 1 // NFTA_DEVICE_NAME
	nfInetIngress  = 5 // NF_INET_INGRESS (linux/netfilter.h)
)

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyARP:
		return "arp"
	}
	return fmt.Sprintf("family-%d", f)
}

func hookName(f nftables.TableFamily, h nftables.ChainHook) string {
	switch f {
	case nftables.TableFamilyNetdev:
		switch h {
		case unix.NF_NETDEV_INGRESS:
			return "ingress"
		case unix.NF_NETDEV_EGRESS:
			return "egress"
		}
	case nftables.TableFamilyARP:
		switch h {
		case 0:
			return "input"
		case 1:
			return "output"
		case 2:
			return "forward"
		}
	default:
		switch h {
		case unix.NF_INET_PRE_ROUTING:
			return "prerouting"
		case unix.NF_INET_LOCAL_IN:
			return "input"
		case unix.NF_INET_FORWARD:
			return "forward"
		case unix.NF_INET_LOCAL_OUT:
			return "output"
		case unix.NF_INET_POST_ROUTING:
			return "postrouting"
		case nfInetIngress:
			return "ingress"
		}
	}
	return fmt.Sprintf("hook-%d", h)
}

type chainKey struct {
	family      byte
	table, name string
}

// scanNftables lists the base chains of the namespace's nftables ruleset
// (iptables-nft's tables included) with their rule counts. A kernel
// without nf_tables has no such rules: that is an empty list, not an error.
func scanNftables() ([]Chain, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: listing tables: %w", err)
	}
	dormant := map[chainKey]bool{}
	for _, t := range tables {
		dormant[chainKey{byte(t.Family), t.Name, ""}] = t.Flags&unix.NFT_TABLE_F_DORMANT != 0
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nftables: listing chains: %w", err)
	}
	var devs map[chainKey][]string
	var out []Chain
	for _, c := range chains {
		if c.Hooknum == nil || c.Table == nil {
			continue // a regular chain: reached only by jumps from base chains
		}
		f := c.Table.Family
		ch := Chain{
			Source:  "nftables",
			Family:  familyName(f),
			Table:   c.Table.Name,
			Name:    c.Name,
			Hook:    hookName(f, *c.Hooknum),
			Policy:  "accept",
			Dormant: dormant[chainKey{byte(f), c.Table.Name, ""}],
		}
		if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
			ch.Policy = "drop"
		}
		// Rules of a family the library cannot decode still count:
		// unreadable is treated as present.
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			ch.Rules = -1
		} else {
			ch.Rules = len(rules)
		}
		if f == nftables.TableFamilyNetdev || ch.Hook == "ingress" {
			if devs == nil {
				// The library does not decode a chain's devices.
				if devs, err = chainDevices(); err != nil {
					devs = map[chainKey][]string{} // unknown: counts for every port
				}
			}
			ch.Devices = devs[chainKey{byte(f), c.Table.Name, c.Name}]
		}
		out = append(out, ch)
	}
	return out, nil
}

// chainDevices dumps every chain and returns the devices of those bound to
// devices (NFTA_HOOK_DEV, or the NFTA_HOOK_DEVS list).
func chainDevices() (map[chainKey][]string, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.Close()
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: []byte{unix.NFPROTO_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("nftables: listing chain devices: %w", err)
	}
	out := map[chainKey][]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		k, d, err := parseChainDevices(m.Data)
		if err != nil {
			return nil, err
		}
		if len(d) > 0 {
			out[k] = d
		}
	}
	return out, nil
}

// parseChainDevices reads a NFT_MSG_NEWCHAIN payload (nfgenmsg, then
// attributes): the chain's key and its devices.
func parseChainDevices(b []byte) (chainKey, []string, error) {
	k := chainKey{family: b[0]}
	var devs []string
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return k, nil, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_CHAIN_TABLE:
			k.table = ad.String()
		case unix.NFTA_CHAIN_NAME:
			k.name = ad.String()
		case unix.NFTA_CHAIN_HOOK:
			ad.Nested(func(hd *netlink.AttributeDecoder) error {
				for hd.Next() {
					switch hd.Type() {
					case unix.NFTA_HOOK_DEV:
						devs = append(devs, hd.String())
					case nftaHookDevs:
						hd.Nested(func(dd *netlink.AttributeDecoder) error {
							for dd.Next() {
								if dd.Type() == nftaDeviceName {
									devs = append(devs, dd.String())
								}
							}
							return nil
						})
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return k, nil, err
	}
	slices.Sort(devs)
	return k, slices.Compact(devs), nil
}
