package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"time"
)

// lengthMix is the prefix-length mix of the synthetic full table, in
// per mille, after the shape of today's IPv4 DFZ: mostly /24, a fair share
// of /16–/23, few shorter. Lengths 8..15 share the last bucket.
var lengthMix = []struct {
	bits    int // 0: one of 8..15
	perMill int
}{
	{24, 600}, {23, 100}, {22, 120}, {21, 50}, {20, 40}, {19, 30},
	{18, 20}, {17, 15}, {16, 20}, {0, 5},
}

// mixText describes lengthMix for the report.
func mixText() string {
	var b bytes.Buffer
	for i, m := range lengthMix {
		if i > 0 {
			b.WriteString(", ")
		}
		name := fmt.Sprintf("/%d", m.bits)
		if m.bits == 0 {
			name = "/8–/15"
		}
		fmt.Fprintf(&b, "%s %.1f%%", name, float64(m.perMill)/10)
	}
	return b.String()
}

// makeTable returns n distinct IPv4 prefixes with lengthMix's length mix, in
// random order, from a fixed seed (every run uses the same table). They
// avoid 0/8, 10/8 (the links), 127/8, 198/8 (the one-route and ECMP
// scenarios) and 224/3.
func makeTable(n int) []netip.Prefix {
	rng := rand.New(rand.NewPCG(4, 2026))
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		pick := rng.IntN(1000)
		bits := 24
		for _, m := range lengthMix {
			if pick < m.perMill {
				bits = m.bits
				break
			}
			pick -= m.perMill
		}
		if bits == 0 {
			bits = 8 + rng.IntN(8)
		}
		first := byte(1 + rng.IntN(223))
		if first == 10 || first == 127 || first == 198 {
			continue
		}
		a := rng.Uint32()
		addr := netip.AddrFrom4([4]byte{first, byte(a >> 16), byte(a >> 8), byte(a)})
		p := netip.PrefixFrom(addr, bits).Masked()
		// The route back to the FlowSpec scenarios' spoofed sources is
		// the topology's: the table may neither repeat nor cover it.
		if seen[p] || p.Overlaps(fsSpoofBack) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

// randomIn returns a random address inside p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if p.Bits() < 32 {
		host |= rng.Uint32() & (1<<(32-p.Bits()) - 1)
	}
	return netip.AddrFrom4([4]byte{byte(host >> 24), byte(host >> 16), byte(host >> 8), byte(host)})
}

// activeDsts returns n destinations in random prefixes of table (with
// repetition when the table is smaller than n), from a fixed seed.
func activeDsts(table []netip.Prefix, n int, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = randomIn(rng, table[rng.IntN(len(table))])
	}
	return out
}

// onePerPrefix returns one random address in each prefix of table.
func onePerPrefix(table []netip.Prefix, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, 9))
	out := make([]netip.Addr, len(table))
	for i, p := range table {
		out[i] = randomIn(rng, p)
	}
	return out
}

// installRoutes adds table[from:to] to the router's main table with one
// `ip -batch` run, each route via one of tableNH in turn. It returns how
// long it took.
func (tp *topo) installRoutes(table []netip.Prefix, from, to int) (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command("ip", "-n", tp.Router.Name(), "-batch", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("ip -batch: %w", err)
	}
	w := bufio.NewWriterSize(stdin, 1<<16)
	var werr error
	for i := from; i < to && werr == nil; i++ {
		_, werr = fmt.Fprintf(w, "route add %s via %s\n", table[i], tableNH[i%len(tableNH)])
	}
	if werr == nil {
		werr = w.Flush()
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("ip -n %s -batch (routes %d..%d): %w: %s", tp.Router.Name(), from, to-1, err, bytes.TrimSpace(out.Bytes()))
	}
	if werr != nil {
		return 0, fmt.Errorf("ip -batch: writing routes: %w", werr)
	}
	return time.Since(start), nil
}
