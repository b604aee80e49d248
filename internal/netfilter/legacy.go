package netfilter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iptables-legacy (x_tables) through its getsockopt interface
// (linux/netfilter_ipv4/ip_tables.h, netfilter_ipv6/ip6_tables.h); the
// iptables binary is not needed. Layouts on 64-bit Linux, the same for
// both families except the entry header.
const (
	soGetInfo    = 64 // IPT_SO_GET_INFO, IP6T_SO_GET_INFO
	soGetEntries = 65 // IPT_SO_GET_ENTRIES, IP6T_SO_GET_ENTRIES

	tableNameLen   = 32 // XT_TABLE_MAXNAMELEN
	getInfoLen     = 84 // struct ipt_getinfo
	entriesHdrLen  = 40 // offsetof(struct ipt_get_entries, entrytable)
	targetHdrLen   = 32 // struct xt_entry_target; a standard target's verdict follows
	verdictAccept  = -2 // -NF_ACCEPT - 1
	numHooks       = 5  // NF_INET_NUMHOOKS
	maxLegacyTries = 3
)

// legacyFamily is what differs between ip_tables and ip6_tables.
type legacyFamily struct {
	family    string // ip or ip6
	names     string // the /proc file listing the tables in use
	af, level int
	targetOff int // offsetof(struct ipt_entry, target_offset)
	nextOff   int // offsetof(struct ipt_entry, next_offset)
}

var legacyFamilies = []legacyFamily{
	{family: "ip", names: "/proc/net/ip_tables_names", af: unix.AF_INET, level: unix.SOL_IP, targetOff: 88, nextOff: 90},
	{family: "ip6", names: "/proc/net/ip6_tables_names", af: unix.AF_INET6, level: unix.SOL_IPV6, targetOff: 140, nextOff: 142},
}

// legacyHooks are the built-in chains XDP forwarding skips.
var legacyHooks = []struct {
	num         int
	chain, hook string
}{
	{unix.NF_INET_PRE_ROUTING, "PREROUTING", "prerouting"},
	{unix.NF_INET_FORWARD, "FORWARD", "forward"},
	{unix.NF_INET_POST_ROUTING, "POSTROUTING", "postrouting"},
}

// scanLegacy lists the prerouting, forward and postrouting chains of the
// iptables-legacy tables in use in this namespace. Only tables listed in
// /proc/net/ip{,6}_tables_names are asked for: asking for another would
// make the kernel create it. A kernel without legacy iptables has no such
// files.
func scanLegacy() ([]Chain, error) {
	var out []Chain
	for _, f := range legacyFamilies {
		names, err := readNames(f.names)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			continue
		}
		// Any socket of the family reaches x_tables' getsockopt (which
		// wants CAP_NET_ADMIN); a UDP one needs no CAP_NET_RAW.
		fd, err := unix.Socket(f.af, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return nil, fmt.Errorf("iptables-legacy: socket: %w", err)
		}
		for _, name := range names {
			cs, err := readLegacyTable(fd, f, name)
			if err != nil {
				unix.Close(fd)
				return nil, err
			}
			out = append(out, cs...)
		}
		unix.Close(fd)
	}
	return out, nil
}

func readNames(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("iptables-legacy: %w", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if n := strings.TrimSpace(sc.Text()); n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

func getsockopt(fd, level, opt int, buf []byte) error {
	l := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// readLegacyTable reads one table's info and entries; a table that changed
// in between (EAGAIN) is read again.
func readLegacyTable(fd int, f legacyFamily, name string) ([]Chain, error) {
	for try := 0; ; try++ {
		info := make([]byte, getInfoLen)
		copy(info, name)
		if err := getsockopt(fd, f.level, soGetInfo, info); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, nil // gone meanwhile
			}
			return nil, fmt.Errorf("iptables-legacy %s table %s: %w", f.family, name, err)
		}
		size := binary.NativeEndian.Uint32(info[getInfoLen-4:])
		ent := make([]byte, entriesHdrLen+int(size))
		copy(ent, name)
		binary.NativeEndian.PutUint32(ent[tableNameLen:], size)
		err := getsockopt(fd, f.level, soGetEntries, ent)
		if errors.Is(err, unix.EAGAIN) && try < maxLegacyTries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("iptables-legacy %s table %s: reading entries: %w", f.family, name, err)
		}
		return parseLegacyTable(f, name, info, ent[entriesHdrLen:])
	}
}

// parseLegacyTable turns a table's info (struct ipt_getinfo) and entry blob
// into its skipped built-in chains: the rules of a chain are the entries
// from its hook entry up to its underflow, which is the policy.
func parseLegacyTable(f legacyFamily, name string, info, blob []byte) ([]Chain, error) {
	u32 := func(off int) int { return int(binary.NativeEndian.Uint32(info[off:])) }
	valid := u32(tableNameLen)
	var out []Chain
	for _, h := range legacyHooks {
		if valid&(1<<h.num) == 0 {
			continue
		}
		entry := u32(tableNameLen + 4 + 4*h.num)
		under := u32(tableNameLen + 4 + 4*numHooks + 4*h.num)
		c := Chain{Source: "iptables-legacy", Family: f.family, Table: name, Name: h.chain, Hook: h.hook}
		for off := entry; off != under; c.Rules++ {
			if off < 0 || off+f.nextOff+2 > len(blob) || off > under {
				return nil, fmt.Errorf("iptables-legacy %s table %s chain %s: entry at %d out of bounds", f.family, name, h.chain, off)
			}
			next := int(binary.NativeEndian.Uint16(blob[off+f.nextOff:]))
			if next == 0 {
				return nil, fmt.Errorf("iptables-legacy %s table %s chain %s: empty entry at %d", f.family, name, h.chain, off)
			}
			off += next
		}
		if under+f.targetOff+2 > len(blob) {
			return nil, fmt.Errorf("iptables-legacy %s table %s chain %s: policy at %d out of bounds", f.family, name, h.chain, under)
		}
		v := under + int(binary.NativeEndian.Uint16(blob[under+f.targetOff:])) + targetHdrLen
		if v+4 > len(blob) {
			return nil, fmt.Errorf("iptables-legacy %s table %s chain %s: policy verdict out of bounds", f.family, name, h.chain)
		}
		c.Policy = "drop"
		if int32(binary.NativeEndian.Uint32(blob[v:])) == verdictAccept {
			c.Policy = "accept"
		}
		out = append(out, c)
	}
	return out, nil
}
