package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"structs"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// Classifier capacities (bpf/xrouter.h).
const (
	FlowspecMaxRules    = 16384  // XR_FS_RULES
	flowspecMaxCands    = 262144 // XR_FS_CANDS
	flowspecMaxPrefixes = 16384  // XR_FS_PREFIXES
	flowspecMaxList     = 16384  // XR_FS_MAX_CANDS
)

// flowspecMinBurst is the smallest token bucket depth in bytes: a bucket
// must hold at least one packet of the largest frame XDP sees.
const flowspecMinBurst = 9216

// flowspecBurstTime is the bucket depth as time at the rule's rate.
const flowspecBurstSeconds = 0.1

type fsNum = struct {
	_  structs.HostLayout
	Lo [4]uint16
	Hi [4]uint16
}

type fsBitop = [4]struct {
	_     structs.HostLayout
	Value uint16
	Flags uint16
}

// fsState is the classifier's user-space side: which bank is live, what
// each bank's trie holds (to clear it before reuse), and the stable
// counter id of every installed match.
type fsState struct {
	mu       sync.Mutex
	bank     int
	trieKeys [2][]fwdXrFsKey
	dstSlots [2][]uint32       // xr_fs_dsts slots in use
	ids      map[string]uint32 // match key -> id
	rules    []flowspec.Rule   // installed, in order
	has4     bool
	has6     bool
}

// FlowspecBurst is the token bucket depth, in bytes, of a rule with the
// given rate in bytes per second.
func FlowspecBurst(rate float64) float64 {
	return max(rate*flowspecBurstSeconds, flowspecMinBurst)
}

// compileRule turns a validated rule into the program's form.
func compileRule(r flowspec.Rule, id uint32) (fwdXrFsRule, error) {
	var c fwdXrFsRule
	if err := flowspec.Validate(r); err != nil {
		return c, err
	}
	m := &r.Match
	c.Id = id
	if m.Src.IsValid() {
		c.Need |= uint32(fwdXrFsCompXR_FS_SRC)
		p := m.Src.Masked()
		var a, mask [16]byte
		if m.Family == flowspec.IPv4 {
			copy(a[:], p.Addr().AsSlice())
		} else {
			a = p.Addr().As16()
		}
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		for i := range 4 {
			c.Src[i] = binary.NativeEndian.Uint32(a[4*i:])
			c.SrcMask[i] = binary.NativeEndian.Uint32(mask[4*i:])
		}
	}
	for _, n := range []struct {
		ops  []flowspec.NumOp
		max  uint64
		flag fwdXrFsComp
		dst  *fsNum
	}{
		{m.Proto, 255, fwdXrFsCompXR_FS_PROTO, &c.Proto},
		{m.Port, 65535, fwdXrFsCompXR_FS_PORT, &c.Port},
		{m.DstPort, 65535, fwdXrFsCompXR_FS_DPORT, &c.Dport},
		{m.SrcPort, 65535, fwdXrFsCompXR_FS_SPORT, &c.Sport},
		{m.ICMPType, 255, fwdXrFsCompXR_FS_ICMP_TYPE, &c.IcmpType},
		{m.ICMPCode, 255, fwdXrFsCompXR_FS_ICMP_CODE, &c.IcmpCode},
		{m.PktLen, 65535, fwdXrFsCompXR_FS_PKTLEN, &c.Pktlen},
		{m.DSCP, 63, fwdXrFsCompXR_FS_DSCP, &c.DscpM},
	} {
		if len(n.ops) == 0 {
			continue
		}
		c.Need |= uint32(n.flag)
		rs := flowspec.Ranges(n.ops, n.max)
		for i := range 4 {
			// Unused ranges never match (lo > hi).
			n.dst.Lo[i], n.dst.Hi[i] = 1, 0
			if i < len(rs) {
				n.dst.Lo[i], n.dst.Hi[i] = uint16(rs[i].Lo), uint16(rs[i].Hi)
			}
		}
	}
	for _, b := range []struct {
		ops  []flowspec.BitOp
		flag fwdXrFsComp
		dst  *fsBitop
	}{{m.TCPFlags, fwdXrFsCompXR_FS_TCP_FLAGS, &c.TcpFlags}, {m.Fragment, fwdXrFsCompXR_FS_FRAG, &c.Frag}} {
		if len(b.ops) == 0 {
			continue
		}
		c.Need |= uint32(b.flag)
		for i, op := range b.ops {
			f := uint16(fwdXrFsBitopFlagsXR_FS_BIT_USED)
			if op.And {
				f |= uint16(fwdXrFsBitopFlagsXR_FS_BIT_AND)
			}
			if op.Not {
				f |= uint16(fwdXrFsBitopFlagsXR_FS_BIT_NOT)
			}
			if op.Match {
				f |= uint16(fwdXrFsBitopFlagsXR_FS_BIT_MATCH)
			}
			b.dst[i].Value, b.dst[i].Flags = uint16(op.Value), f
		}
	}
	a := r.Action
	if a.RateLimited && a.Rate == 0 {
		c.Action |= uint8(fwdXrFsActionXR_FS_ACT_DROP)
	} else if a.RateLimited {
		rate := max(float64(a.Rate), 1)
		c.Action |= uint8(fwdXrFsActionXR_FS_ACT_RATE)
		c.NsPerByte = uint64(65536 * 1e9 / rate)
		c.BurstNs = uint64(FlowspecBurst(rate) * 1e9 / rate)
	}
	if a.MarkDSCP {
		c.Action |= uint8(fwdXrFsActionXR_FS_ACT_MARK)
		c.Dscp = a.DSCP
	}
	return c, nil
}

// candSummary is a candidate list entry for the compiled rule in slot
// (struct xr_fs_cand): the first word of its source prefix, its protocol
// and destination port ranges folded into one range each, the packet
// properties it needs, and whether those are the whole rule besides its
// destination.
func candSummary(c *fwdXrFsRule, slot uint32) fwdXrFsCand {
	const (
		needHave = fwdXrFsCompXR_FS_PORT | fwdXrFsCompXR_FS_DPORT | fwdXrFsCompXR_FS_SPORT |
			fwdXrFsCompXR_FS_ICMP_TYPE | fwdXrFsCompXR_FS_ICMP_CODE | fwdXrFsCompXR_FS_TCP_FLAGS
		summarised = fwdXrFsCompXR_FS_SRC | fwdXrFsCompXR_FS_PROTO | fwdXrFsCompXR_FS_DPORT
	)
	// span folds a component's used ranges (lo <= hi) into one: the range
	// itself and how many there were; none used gives an empty range.
	span := func(n *fsNum) (lo, hi uint16, used int) {
		lo, hi = 1, 0
		for i := range n.Lo {
			if n.Lo[i] > n.Hi[i] {
				continue
			}
			if used == 0 || n.Lo[i] < lo {
				lo = n.Lo[i]
			}
			if used == 0 || n.Hi[i] > hi {
				hi = n.Hi[i]
			}
			used++
		}
		return lo, hi, used
	}
	e := fwdXrFsCand{Slot: slot, NeedHave: uint16(c.Need & uint32(needHave)), ProtoLo: 0, ProtoHi: 255, DportHi: 65535}
	exact := c.Need&^uint32(summarised) == 0
	if c.Need&uint32(fwdXrFsCompXR_FS_SRC) != 0 {
		e.Src0, e.SrcMask0 = c.Src[0], c.SrcMask[0]
		exact = exact && c.SrcMask[1] == 0 // the rest of the source is the rule's to check
	}
	if c.Need&uint32(fwdXrFsCompXR_FS_PROTO) != 0 {
		lo, hi, used := span(&c.Proto)
		e.ProtoLo, e.ProtoHi = uint8(lo), uint8(hi)
		exact = exact && used <= 1
	}
	if c.Need&uint32(fwdXrFsCompXR_FS_DPORT) != 0 {
		lo, hi, used := span(&c.Dport)
		e.DportLo, e.DportHi = lo, hi
		exact = exact && used <= 1
	}
	if exact {
		e.Exact = 1
	}
	return e
}

// fsPortBit is a port's bit in a list's port sets (bpf/xrouter.h
// xr_fs_port_bit).
func fsPortBit(port uint64) uint64 {
	return 1 << (uint32(port) * 0x9e3779b1 >> 26)
}

// fsPortSetMax is how many values a rule's port component may have for its
// list to keep port sets.
const fsPortSetMax = 16

// fsPortSets are the port sets of the list of rules l (struct
// xr_fs_list): ports 1 when every rule names a few ports in one of its
// port components, with the bits of those values in dports (destination
// port and either port) and sports (source port and either port).
func fsPortSets(rules []flowspec.Rule, l []int) (ports uint32, dports, sports uint64) {
	// values are a component's port values, if few.
	values := func(ops []flowspec.NumOp) []uint64 {
		if len(ops) == 0 {
			return nil
		}
		var vs []uint64
		for _, r := range flowspec.Ranges(ops, 65535) {
			if r.Hi-r.Lo >= fsPortSetMax || len(vs)+int(r.Hi-r.Lo) >= fsPortSetMax {
				return nil
			}
			for v := r.Lo; v <= r.Hi; v++ {
				vs = append(vs, v)
			}
		}
		return vs
	}
	if len(l) == 0 {
		return 0, 0, 0
	}
	for _, i := range l {
		m := &rules[i].Match
		d, sp, either := values(m.DstPort), values(m.SrcPort), values(m.Port)
		if d == nil && sp == nil && either == nil {
			return 0, 0, 0 // this rule may match any port
		}
		// A rule with several port components is screened by any one of
		// them: setting the bits of each keeps the sets a superset.
		for _, v := range d {
			dports |= fsPortBit(v)
		}
		for _, v := range sp {
			sports |= fsPortBit(v)
		}
		for _, v := range either {
			dports |= fsPortBit(v)
			sports |= fsPortBit(v)
		}
	}
	return 1, dports, sports
}

// fsFilterHash is the destination index's hash (bpf/flowspec.h fs_hash)
// of address words a masked by m, at the filter's length index l: its
// upper 16 bits are the hit map's index, fsSlot of it the table's home slot.
func fsFilterHash(a, m *[4]uint32, words int, l uint32) uint32 {
	h := a[0]&m[0] ^ (l+1)*0x9e3779b9
	if words > 1 {
		for i := 1; i < 4; i++ {
			h = h*0x85ebca6b ^ a[i]&m[i]
		}
	}
	return h * 0xc2b2ae35
}

// fsSlot is the destination table's home slot for hash h (fs_slot).
func fsSlot(h uint32) uint32 {
	h ^= h >> 15
	h *= 0x2c1b3c6d
	return h >> 16
}

// addrWords is an address as the program reads it: 4-byte words in host
// order over the address bytes (IPv4 in the first word).
func addrWords(a netip.Addr) (w [4]uint32, words int) {
	var b [16]byte
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		words = 1
	} else {
		b = a.As16()
		words = 4
	}
	for i := range 4 {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w, words
}

// Destination index sizes (bpf/xrouter.h).
const (
	fsDstSlots = 65536 // XR_FS_DST_SLOTS
	fsProbes   = 16    // XR_FS_PROBES
)

// fsIndexOf is the destination index over a family's rule destinations and
// their candidate lists (struct xr_fs_filter, and the family's slots of
// xr_fs_dsts by slot number within it). A default prefix among them, or
// more distinct lengths than the filter holds, turns the index off (every
// packet goes to the trie); a prefix that finds no table slot within
// fsProbes of its home keeps the hit map but sends its hits to the trie.
func fsIndexOf(lists map[netip.Prefix]fwdXrFsList) (*fwdXrFsFilter, map[uint32]fwdXrFsDst) {
	f := &fwdXrFsFilter{}
	var lens []int
	for p, l := range lists {
		if l.N == 0 {
			continue // the family's empty default list
		}
		if p.Bits() == 0 {
			f.All = 1
			return f, nil
		}
		if !slices.Contains(lens, p.Bits()) {
			lens = append(lens, p.Bits())
		}
	}
	if len(lens) > len(f.Mask) {
		f.All = 1
		return f, nil
	}
	// Longest first: the first length that finds the destination in the
	// table gives the most specific list.
	slices.SortFunc(lens, func(a, b int) int { return b - a })
	idx := map[int]uint32{}
	for i, bits := range lens {
		idx[bits] = uint32(i)
		var mb [16]byte
		for b := range bits {
			mb[b/8] |= 0x80 >> (b % 8)
		}
		for w := range 4 {
			f.Mask[i][w] = binary.NativeEndian.Uint32(mb[4*w:])
		}
	}
	f.Nlen = uint32(len(lens))
	table := map[uint32]fwdXrFsDst{}
	// In a fixed order, so that the same rules give the same table.
	pfxs := slices.SortedFunc(maps.Keys(lists), func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	for _, p := range pfxs {
		l := lists[p]
		if l.N == 0 {
			continue
		}
		i := idx[p.Bits()]
		a, words := addrWords(p.Addr())
		h := fsFilterHash(&a, &f.Mask[i], words, i)
		b := h >> 16
		f.Hits[b] = 1
		placed := false
		for j := range uint32(fsProbes) {
			slot := (fsSlot(h) + j) % fsDstSlots
			if _, used := table[slot]; used {
				continue
			}
			e := fwdXrFsDst{Len: i + 1, List: l}
			for w := range 4 {
				e.Addr[w] = a[w] & f.Mask[i][w]
			}
			table[slot] = e
			placed = true
			break
		}
		if !placed {
			f.Trie = 1
		}
	}
	if f.Trie == 1 {
		table = nil
	}
	return f, table
}

// fsTrieKey is the trie key of prefix p in bank.
func fsTrieKey(bank int, fam flowspec.Family, p netip.Prefix) fwdXrFsKey {
	k := fwdXrFsKey{Prefixlen: 16 + uint32(p.Bits()), Bank: uint8(bank)}
	if fam == flowspec.IPv4 {
		k.Family = 2 // AF_INET
		copy(k.Addr[:], p.Addr().AsSlice())
	} else {
		k.Family = 10 // AF_INET6
		k.Addr = p.Addr().As16()
	}
	return k
}

// fsLists builds, per distinct destination prefix of the rules (and the
// family's default prefix), the indexes of the rules whose destination
// covers it, in rule order.
func fsLists(rules []flowspec.Rule) map[flowspec.Family]map[netip.Prefix][]int {
	dst := func(r *flowspec.Rule) netip.Prefix {
		if r.Match.Dst.IsValid() {
			return r.Match.Dst.Masked()
		}
		if r.Match.Family == flowspec.IPv4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	byPfx := map[flowspec.Family]map[netip.Prefix][]int{}
	for i := range rules {
		f := rules[i].Match.Family
		if byPfx[f] == nil {
			byPfx[f] = map[netip.Prefix][]int{}
		}
		p := dst(&rules[i])
		byPfx[f][p] = append(byPfx[f][p], i)
	}
	out := map[flowspec.Family]map[netip.Prefix][]int{}
	for f, pfxs := range byPfx {
		out[f] = map[netip.Prefix][]int{}
		for p := range pfxs {
			var l []int
			for bits := 0; bits <= p.Bits(); bits++ {
				anc, _ := p.Addr().Prefix(bits)
				l = append(l, pfxs[anc]...)
			}
			sortInts(l)
			out[f][p] = l
		}
	}
	return out
}

func sortInts(l []int) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j] < l[j-1]; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

// SetFlowspec installs rules (in classifier order, as flowspec.Table hands
// them) as the complete rule set: it fills the idle bank and then switches
// the program to it with one store, so a packet sees the old set or the
// new one, never a mix. A rule that keeps its match keeps its counters and
// bucket. On error nothing changed.
func (d *Dataplane) SetFlowspec(rules []flowspec.Rule) error {
	s := &d.fs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]uint32{}
	}
	if len(rules) > FlowspecMaxRules {
		return fmt.Errorf("flowspec: %d rules, at most %d", len(rules), FlowspecMaxRules)
	}
	// Ids: kept for matches already installed, the lowest free for new ones.
	ids := make([]uint32, len(rules))
	used := map[uint32]bool{}
	keys := make([]string, len(rules))
	for i := range rules {
		keys[i] = rules[i].Match.Key()
		if id, ok := s.ids[keys[i]]; ok {
			ids[i] = id
			used[id] = true
		}
	}
	var fresh []uint32
	next := uint32(0)
	for i := range rules {
		if _, ok := s.ids[keys[i]]; ok {
			continue
		}
		for used[next] {
			next++
		}
		ids[i] = next
		used[next] = true
		fresh = append(fresh, next)
	}
	compiled := make([]fwdXrFsRule, len(rules))
	for i, r := range rules {
		c, err := compileRule(r, ids[i])
		if err != nil {
			return fmt.Errorf("flowspec rule %s from %s: %w", r.Match.String(), r.Source, err)
		}
		compiled[i] = c
	}
	lists := fsLists(rules)
	nPfx, nCands := 0, 0
	for _, pl := range lists {
		for p, l := range pl {
			nPfx++
			nCands += len(l)
			if len(l) > flowspecMaxList {
				return fmt.Errorf("flowspec: %d rules cover destination %s, at most %d", len(l), p, flowspecMaxList)
			}
		}
	}
	if nPfx > flowspecMaxPrefixes {
		return fmt.Errorf("flowspec: %d distinct destination prefixes, at most %d", nPfx, flowspecMaxPrefixes)
	}
	if nCands > flowspecMaxCands {
		return fmt.Errorf("flowspec: candidate lists need %d entries, at most %d (many rules with nested destinations)", nCands, flowspecMaxCands)
	}

	// New ids start from zero counters and a full bucket.
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("flowspec: %w", err)
	}
	zeros := make([]fwdXrCounter, ncpu)
	for _, id := range fresh {
		if err := d.objs.XrFsStats.Put(id, zeros); err != nil {
			return fmt.Errorf("flowspec: resetting counters of rule %d: %w", id, err)
		}
		if err := d.objs.XrFsBuckets.Put(id, &fwdXrFsBucket{}); err != nil {
			return fmt.Errorf("flowspec: resetting bucket of rule %d: %w", id, err)
		}
	}

	bank := 1 - s.bank
	for _, slot := range s.dstSlots[bank] {
		if err := d.objs.XrFsDsts.Put(slot, &fwdXrFsDst{}); err != nil {
			return fmt.Errorf("flowspec: clearing %s: %w", fwdMapXrFsDsts, err)
		}
	}
	s.dstSlots[bank] = nil
	for _, k := range s.trieKeys[bank] {
		if err := d.objs.XrFsTrie.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("flowspec: clearing %s: %w", fwdMapXrFsTrie, err)
		}
	}
	s.trieKeys[bank] = nil
	base := uint32(bank) * FlowspecMaxRules
	for i := range compiled {
		if err := d.objs.XrFsRules.Put(base+uint32(i), &compiled[i]); err != nil {
			return fmt.Errorf("flowspec: writing %s: %w", fwdMapXrFsRules, err)
		}
	}
	cand := uint32(bank) * flowspecMaxCands
	var has4, has6 bool
	written := map[flowspec.Family]map[netip.Prefix]fwdXrFsList{}
	for f, pl := range lists {
		written[f] = map[netip.Prefix]fwdXrFsList{}
		if f == flowspec.IPv4 {
			has4 = true
		} else {
			has6 = true
		}
		// The family's default prefix always has a list (maybe empty),
		// so that no lookup falls through to nothing by accident.
		var def netip.Prefix
		if f == flowspec.IPv4 {
			def = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		} else {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if _, ok := pl[def]; !ok {
			pl[def] = nil
		}
		for p, l := range pl {
			v := fwdXrFsList{Start: cand, N: uint32(len(l))}
			v.Ports, v.Dports, v.Sports = fsPortSets(rules, l)
			for _, i := range l {
				e := candSummary(&compiled[i], base+uint32(i))
				if err := d.objs.XrFsCands.Put(cand, &e); err != nil {
					return fmt.Errorf("flowspec: writing %s: %w", fwdMapXrFsCands, err)
				}
				cand++
			}
			k := fsTrieKey(bank, f, p)
			if err := d.objs.XrFsTrie.Put(&k, &v); err != nil {
				return fmt.Errorf("flowspec: writing %s: %w", fwdMapXrFsTrie, err)
			}
			s.trieKeys[bank] = append(s.trieKeys[bank], k)
			written[f][p] = v
		}
	}
	// The bank's destination index, filters last: a family without rules
	// gets an empty one (its XR_NF_FS bit is off anyway).
	for fi, f := range []flowspec.Family{flowspec.IPv4, flowspec.IPv6} {
		filter, table := fsIndexOf(written[f])
		for slot, e := range table {
			at := uint32(bank*2+fi)*fsDstSlots + slot
			if err := d.objs.XrFsDsts.Put(at, &e); err != nil {
				return fmt.Errorf("flowspec: writing %s: %w", fwdMapXrFsDsts, err)
			}
			s.dstSlots[bank] = append(s.dstSlots[bank], at)
		}
		if err := d.objs.XrFsFilters.Put(uint32(bank*2+fi), filter); err != nil {
			return fmt.Errorf("flowspec: writing %s: %w", fwdMapXrFsFilters, err)
		}
	}
	var bits uint32
	if has4 {
		bits |= uint32(fwdXrNfFlagsXR_NF_FS4)
	}
	if has6 {
		bits |= uint32(fwdXrNfFlagsXR_NF_FS6)
	}
	if bank == 1 {
		bits |= uint32(fwdXrNfFlagsXR_NF_FS_BANK)
	}
	mask := uint32(fwdXrNfFlagsXR_NF_FS4 | fwdXrNfFlagsXR_NF_FS6 | fwdXrNfFlagsXR_NF_FS_BANK)
	if err := d.writeNF(mask, bits); err != nil {
		return err
	}
	s.bank = bank
	s.ids = map[string]uint32{}
	for i := range rules {
		s.ids[keys[i]] = ids[i]
	}
	s.rules = append([]flowspec.Rule(nil), rules...)
	s.has4, s.has6 = has4, has6
	return nil
}

// writeNF sets the bits of mask in the nf word to bits, keeping the others,
// with one word-sized store through the mapping.
func (d *Dataplane) writeNF(mask, bits uint32) error {
	d.nfMu.Lock()
	defer d.nfMu.Unlock()
	mem, err := d.objs.XrCacheGen.Memory()
	if err != nil {
		return fmt.Errorf("mapping %s: %w", CacheGenMapName, err)
	}
	var b [4]byte
	if _, err := mem.ReadAt(b[:], cfgOffNF); err != nil {
		return fmt.Errorf("reading %s: %w", CacheGenMapName, err)
	}
	v := binary.NativeEndian.Uint32(b[:])&^mask | bits&mask
	binary.NativeEndian.PutUint32(b[:], v)
	if _, err := mem.WriteAt(b[:], cfgOffNF); err != nil {
		return fmt.Errorf("writing %s: %w", CacheGenMapName, err)
	}
	return nil
}

// FlowspecRuleStats is an installed rule with its counters.
type FlowspecRuleStats struct {
	Rule    flowspec.Rule
	ID      uint32
	Packets uint64 // matched
	Bytes   uint64
	Over    uint64 // of those, dropped for being over the rate
}

// FlowspecStats lists the installed rules in order with their counters.
func (d *Dataplane) FlowspecStats() ([]FlowspecRuleStats, error) {
	s := &d.fs
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FlowspecRuleStats, 0, len(s.rules))
	var per []fwdXrCounter
	for _, r := range s.rules {
		id := s.ids[r.Match.Key()]
		st := FlowspecRuleStats{Rule: r, ID: id}
		if err := d.objs.XrFsStats.Lookup(id, &per); err != nil {
			return nil, fmt.Errorf("reading %s: %w", fwdMapXrFsStats, err)
		}
		for _, c := range per {
			st.Packets += c.Packets
			st.Bytes += c.Bytes
		}
		var b fwdXrFsBucket
		if err := d.objs.XrFsBuckets.Lookup(id, &b); err != nil {
			return nil, fmt.Errorf("reading %s: %w", fwdMapXrFsBuckets, err)
		}
		st.Over = b.Over
		out = append(out, st)
	}
	return out, nil
}
