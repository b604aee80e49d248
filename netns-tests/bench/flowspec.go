package bench

// The FlowSpec scenarios (issue 12): a spoofed-source UDP flood that one
// FlowSpec rule matches, dropped by xrouter's XDP classifier against the
// same rules as an nftables ruleset in the kernel's forward hook; and
// legitimate traffic forwarded by xrouter with and without rules it does
// not match.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// The FlowSpec modes (router side).
const (
	// ModeFSXrouter is the xrouter daemon with the phase's FlowSpec rules
	// in flowspec.rules (traffic-rate 0: drop).
	ModeFSXrouter = "xrouter-fs"
	// ModeNftLinear is kernel forwarding with the same rules as one
	// nftables rule each, in a base chain on the forward hook, in the
	// rules' FlowSpec order: what translating FlowSpec one to one gives.
	ModeNftLinear = "nft"
	// ModeNftSet is kernel forwarding with one nftables rule that looks
	// the packet up in a set of every rule's (destination prefix,
	// protocol, destination port): a concatenated interval set.
	ModeNftSet = "nft-set"
)

// FlowSpecModes in report order.
var FlowSpecModes = []string{ModeFSXrouter, ModeNftLinear, ModeNftSet}

// fsDropModes are the attack scenarios' modes: the FlowSpec modes and the
// bare drop, the harness's own cost, which the router's is measured above.
var fsDropModes = slices.Concat(FlowSpecModes, []string{ModeDrop})

func init() {
	modeLabel[ModeFSXrouter] = "xrouter, FlowSpec rules (XDP)"
	modeLabel[ModeNftLinear] = "nftables, one rule per FlowSpec rule"
	modeLabel[ModeNftSet] = "nftables, one set lookup"
	modeColor[ModeFSXrouter] = modeColor[ModeXrouter]
	modeColor[ModeNftLinear] = modeColor[ModeKernel]
	modeColor[ModeNftSet] = modeColor[ModeRedirect]
}

// The attack: UDP to the victim's port 53 from spoofed sources.
var (
	fsVictim = netip.MustParseAddr("198.18.0.7") // inside oneRoute4
	// fsSpoof holds the spoofed sources: fsSpoofBits random low bits. The
	// router routes fsSpoofBack back to the source, so that reverse-path
	// filtering, were it on, would pass them as a real edge router would.
	fsSpoof     = netip.MustParseAddr("100.64.0.0")
	fsSpoofBack = netip.MustParsePrefix("100.64.0.0/10")
)

const (
	fsSpoofBits        = 16
	fsAttackPort       = 53
	fsLegitPort        = 9 // the legitimate traffic's port: no rule names it
	fsCounterName      = "fs_attack"
	fsTable            = "xrbench_fs"
	protoTCP, protoUDP = 6, 17
)

// fsVictimRules are the victim's other rules besides the attack's (UDP
// 53): the ports of other floods an operator would filter for the same
// host.
var fsVictimRules = []struct {
	proto uint8
	port  uint16
}{{protoUDP, 123}, {protoUDP, 1900}, {protoUDP, 11211}, {protoUDP, 389}, {protoUDP, 19}, {protoTCP, 80}, {protoTCP, 443}}

// fsOtherPorts are the ports of the other hosts' rules.
var fsOtherPorts = []uint16{53, 123, 1900, 11211, 389, 19, 161, 137, 3702, 5353, 80, 443, 22, 3389}

// fsRule is one benchmark rule: destination prefix, protocol, destination
// port; action drop.
type fsRule struct {
	dst   netip.Prefix
	proto uint8
	port  uint16
}

func (f fsRule) attack() bool {
	return f.dst == netip.PrefixFrom(fsVictim, 32) && f.proto == protoUDP && f.port == fsAttackPort
}

// FlowSpecSet describes a FlowSpec phase's rule set for the report.
type FlowSpecSet struct {
	Rules int
	// AttackPos is the attack's rule's 1-based position in FlowSpec order:
	// the rules a linear nftables chain tries for an attack packet.
	AttackPos int
	// VictimRules is how many rules name the attacked host: the length of
	// xrouter's candidate list for its address.
	VictimRules int
}

// fsSet is a phase's rule set in FlowSpec (RFC 8955 §5.1) order.
type fsSet struct {
	rules []fsRule
	// attackPos is the attack rule's 1-based position in that order: how
	// many rules a linear chain tries for an attack packet.
	attackPos int
	// victimRules is how many rules name the victim: xrouter's candidate
	// list for its address.
	victimRules int
}

// makeFSRules returns n rules (n >= 1): the attack's, up to 7 more for the
// victim, and rules for other hosts (a /32 or, one in three, a whole /24,
// each in its own random /24, so that no two overlap), half of them below
// the victim's address and half above, so that in FlowSpec order the
// attack's rule sits mid-list. Fixed seed.
func makeFSRules(n int) (*fsSet, error) {
	rng := rand.New(rand.NewPCG(12, uint64(n)))
	victim := netip.PrefixFrom(fsVictim, 32)
	rules := []fsRule{{victim, protoUDP, fsAttackPort}}
	for _, v := range fsVictimRules[:min(n-1, len(fsVictimRules))] {
		rules = append(rules, fsRule{victim, v.proto, v.port})
	}
	blocks := map[[3]byte]bool{}
	for i := 0; len(rules) < n; i++ {
		var first byte
		if i%2 == 0 {
			first = byte(1 + rng.IntN(197)) // 1..197
		} else {
			first = byte(199 + rng.IntN(25)) // 199..223
		}
		if first == 10 || first == 127 || first == 100 {
			continue
		}
		blk := [3]byte{first, byte(rng.IntN(256)), byte(rng.IntN(256))}
		if blocks[blk] {
			continue
		}
		blocks[blk] = true
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{blk[0], blk[1], blk[2], 0}), 24)
		if rng.IntN(3) != 0 {
			dst = netip.PrefixFrom(netip.AddrFrom4([4]byte{blk[0], blk[1], blk[2], byte(1 + rng.IntN(254))}), 32)
		}
		port := fsOtherPorts[rng.IntN(len(fsOtherPorts))]
		proto := uint8(protoUDP)
		if port == 80 || port == 443 || port == 22 || port == 3389 {
			proto = protoTCP
		}
		rules = append(rules, fsRule{dst, proto, port})
	}
	// Order them as the classifier does, with xrouter's own comparison.
	type pair struct {
		f fsRule
		r flowspec.Rule
	}
	ps := make([]pair, len(rules))
	for i, f := range rules {
		r, err := f.static().Rule()
		if err != nil {
			return nil, fmt.Errorf("benchmark FlowSpec rule %d (%v): %w", i, f, err)
		}
		ps[i] = pair{f, r}
	}
	slices.SortStableFunc(ps, func(a, b pair) int { return flowspec.Compare(&a.r, &b.r) })
	s := &fsSet{}
	for i, p := range ps {
		s.rules = append(s.rules, p.f)
		if p.f.attack() {
			s.attackPos = i + 1
		}
		if p.f.dst.Contains(fsVictim) {
			s.victimRules++
		}
	}
	return s, nil
}

func protoName(p uint8) string {
	if p == protoTCP {
		return "tcp"
	}
	return "udp"
}

// static is the rule as flowspec.rules has it.
func (f fsRule) static() flowspec.StaticRule {
	zero := 0.0
	return flowspec.StaticRule{
		Match: flowspec.StaticMatch{
			Destination: f.dst.String(), Protocol: []string{protoName(f.proto)},
			DestinationPort: []string{fmt.Sprintf("=%d", f.port)},
		},
		Action: flowspec.StaticAction{Rate: &zero},
	}
}

// yaml renders the rules as the config's flowspec section.
func (s *fsSet) yaml() string {
	var b strings.Builder
	b.WriteString("flowspec:\n  rules:\n")
	for _, f := range s.rules {
		fmt.Fprintf(&b, "    - {match: {destination: %s, protocol: [%s], destination_port: [\"=%d\"]}, action: {rate: 0}}\n",
			f.dst, protoName(f.proto), f.port)
	}
	return b.String()
}

// nftBatch is how many rules or set elements go into one commit.
const nftBatch = 200

// nftTable is the benchmark's nftables table in the router namespace.
var nftTable = &nftables.Table{Name: fsTable, Family: nftables.TableFamilyIPv4}

// installNft programs the rule set into the router's forward hook: linear
// (one rule per FlowSpec rule, in order, each `ip daddr P ip protocol X th
// dport N counter drop`) or as one rule with a set lookup. The attack's
// rule (linear) or the set's rule counts into the named counter
// fsCounterName, read by nftAttackCount.
func (tp *topo) installNft(s *fsSet, set bool) error {
	return tp.Router.Do(func() error {
		// The kernel echoes every rule added: a batch's replies need a
		// larger receive buffer than the default.
		c, err := nftables.New(nftables.WithSockOptions(func(nc *netlink.Conn) error { return nc.SetReadBuffer(4 << 20) }))
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		c.AddTable(nftTable)
		c.AddObj(&nftables.CounterObj{Table: nftTable, Name: fsCounterName})
		policy := nftables.ChainPolicyAccept
		fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: nftTable, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
		named := &expr.Objref{Type: 1 /* NFT_OBJECT_COUNTER */, Name: fsCounterName}
		drop := &expr.Verdict{Kind: expr.VerdictDrop}
		if !set {
			for i, f := range s.rules {
				a := f.dst.Addr().As4()
				var ex []expr.Any
				ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4})
				if f.dst.Bits() < 32 {
					m := net4Mask(f.dst.Bits())
					ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)})
				}
				ex = append(ex,
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.proto}},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, f.port)},
				)
				if f.attack() {
					ex = append(ex, named, drop)
				} else {
					ex = append(ex, &expr.Counter{}, drop)
				}
				c.AddRule(&nftables.Rule{Table: nftTable, Chain: fwd, Exprs: ex})
				// One netlink message holds a few thousand rules at most:
				// commit in batches (appending, so the order stays).
				if (i+1)%nftBatch == 0 {
					if err := c.Flush(); err != nil {
						return fmt.Errorf("rules up to %d: %w", i, err)
					}
				}
			}
			return c.Flush()
		}
		st := &nftables.Set{Table: nftTable, Name: "fs", Interval: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)}
		var elems []nftables.SetElement
		for _, f := range s.rules {
			lo := f.dst.Addr().As4()
			hi := lastAddr(f.dst).As4()
			key := func(a [4]byte) []byte {
				k := make([]byte, 12) // 4 + 1 padded to 4 + 2 padded to 4
				copy(k, a[:])
				k[4] = f.proto
				binary.BigEndian.PutUint16(k[8:], f.port)
				return k
			}
			elems = append(elems, nftables.SetElement{Key: key(lo), KeyEnd: key(hi)})
		}
		if err := c.AddSet(st, elems[:min(len(elems), nftBatch)]); err != nil {
			return fmt.Errorf("nftables set: %w", err)
		}
		for i := nftBatch; i < len(elems); i += nftBatch {
			if err := c.Flush(); err != nil {
				return fmt.Errorf("nftables set elements up to %d: %w", i, err)
			}
			if err := c.SetAddElements(st, elems[i:min(len(elems), i+nftBatch)]); err != nil {
				return fmt.Errorf("nftables set elements from %d: %w", i, err)
			}
		}
		c.AddRule(&nftables.Rule{Table: nftTable, Chain: fwd, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},   // NFT_REG32_00
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},    // NFT_REG32_01
			&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // NFT_REG32_02
			&expr.Lookup{SourceRegister: 1, SetName: st.Name, SetID: st.ID},
			named, drop,
		}})
		return c.Flush()
	})
}

func net4Mask(bits int) []byte {
	return binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits))
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}

// removeNft deletes the benchmark's table.
func (tp *topo) removeNft() error {
	return tp.Router.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(nftTable)
		return c.Flush()
	})
}

// nftAttackCount reads the named counter: packets the attack's rule
// dropped. nftables has no per-CPU view of it.
func (tp *topo) nftAttackCount() (uint64, []uint64, error) {
	var n uint64
	err := tp.Router.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		o, err := c.GetObject(&nftables.CounterObj{Table: nftTable, Name: fsCounterName})
		if err != nil {
			return fmt.Errorf("reading nftables counter %s: %w", fsCounterName, err)
		}
		co, ok := o.(*nftables.CounterObj)
		if !ok {
			return fmt.Errorf("nftables counter %s: got %T", fsCounterName, o)
		}
		n = co.Packets
		return nil
	})
	return n, nil, err
}
