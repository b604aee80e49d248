package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xrouter/xrouter/internal/testbed"
)

// MaxDsts is the most destinations a generator cycles through (bpf/gen.c's
// GEN_MAX_DSTS).
const MaxDsts = 1 << 20

// Traffic is what the generator sends.
type Traffic struct {
	DstMAC, SrcMAC net.HardwareAddr
	// Src is the source address; its family is the traffic's family.
	Src netip.Addr
	// Dsts are the destinations, all of Src's family, at most MaxDsts.
	Dsts []netip.Addr
	// Random picks each frame's destination with the kernel's PRNG instead
	// of cycling through Dsts in order.
	Random bool
	// Flows is how many UDP source ports (SportBase, SportBase+1, ...) the
	// frames cycle through; 0 or 1 means one.
	Flows     int
	SportBase uint16
	Dport     uint16
	// TTL is the TTL / hop limit of the frames.
	TTL uint8
	// SlowEvery makes every SlowEvery-th frame a slow-path frame with TTL 1
	// (0: none).
	SlowEvery int
	// SrcBits, for IPv4, sets this many low bits of the source address at
	// random per frame (0: Src as it is): spoofed sources, as in a flood.
	SrcBits int
}

// Generator is the live-frames traffic generator (bpf/gen.c).
type Generator struct {
	objs genObjects
}

// LoadGenerator loads the generator program and its maps.
func LoadGenerator() (*Generator, error) {
	g := &Generator{}
	if err := loadGenObjects(&g.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading generator: %+v", verr)
		}
		return nil, fmt.Errorf("loading generator: %w", err)
	}
	return g, nil
}

// Close releases the generator.
func (g *Generator) Close() error { return g.objs.Close() }

// Configure sets what the following Runs send.
func (g *Generator) Configure(tr Traffic) error {
	if len(tr.Dsts) == 0 || len(tr.Dsts) > MaxDsts {
		return fmt.Errorf("generator: %d destinations (want 1 to %d)", len(tr.Dsts), MaxDsts)
	}
	if len(tr.DstMAC) != 6 || len(tr.SrcMAC) != 6 {
		return fmt.Errorf("generator: MACs %q and %q must be 6 bytes", tr.DstMAC, tr.SrcMAC)
	}
	var c genGenCfg
	copy(c.Dmac[:], tr.DstMAC)
	copy(c.Smac[:], tr.SrcMAC)
	c.Family = 6
	if tr.Src.Is4() {
		c.Family = 4
		a := tr.Src.As4()
		copy(c.Src[:], a[:])
	} else {
		a := tr.Src.As16()
		copy(c.Src[:], a[:])
	}
	keys := make([]uint32, len(tr.Dsts))
	vals := make([]genGenDst, len(tr.Dsts))
	for i, d := range tr.Dsts {
		if d.Is4() != tr.Src.Is4() {
			return fmt.Errorf("generator: destination %s is not of the source %s's family", d, tr.Src)
		}
		keys[i] = uint32(i)
		if d.Is4() {
			a := d.As4()
			copy(vals[i].Addr[:], a[:])
		} else {
			a := d.As16()
			copy(vals[i].Addr[:], a[:])
		}
	}
	// Batches of 64k keep the kernel's temporary copy small.
	for i := 0; i < len(keys); i += 1 << 16 {
		j := min(i+1<<16, len(keys))
		if _, err := g.objs.GenDsts.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
			return fmt.Errorf("generator: writing destinations %d..%d: %w", i, j-1, err)
		}
	}
	c.Ndst = uint32(len(tr.Dsts))
	if tr.Random {
		c.Random = 1
	}
	c.Nflows = uint32(max(tr.Flows, 1))
	if tr.SrcBits < 0 || tr.SrcBits > 32 || (tr.SrcBits > 0 && !tr.Src.Is4()) {
		return fmt.Errorf("generator: SrcBits %d (want 0 to 32, IPv4 only)", tr.SrcBits)
	}
	c.SrcBits = uint8(tr.SrcBits)
	c.SlowEvery = uint32(tr.SlowEvery)
	c.SportBase, c.Dport, c.Ttl = tr.SportBase, tr.Dport, tr.TTL
	if err := g.objs.GenConfig.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("generator: writing config: %w", err)
	}
	return nil
}

// Run sends frames frames of frameLen bytes out of the interface ifindex
// (XDP_TX), batch frames per kernel batch. The interface index is resolved
// in the calling thread's network namespace: call it from a locked thread
// inside the source namespace. The frames' payload past the UDP header is
// zero the first time a page is used and whatever it was afterwards.
//
// A signal to the calling thread (Interrupt) ends the run early; that is
// not an error. Unlike ebpf.Program.Run, an interrupted run is not
// restarted. Each call has a fixed cost (tens of ms: the kernel sets up and
// tears down a page pool), so rates must be measured from counters read
// while it runs, not from the call's duration.
func (g *Generator) Run(ifindex, frameLen int, frames, batch uint32) error {
	if frameLen < 64 || frameLen > 3000 {
		return fmt.Errorf("generator: frame length %d (want 64 to 3000)", frameLen)
	}
	_, err := testbed.RunXDP(testbed.XDPRun{
		ProgFD:  g.objs.XrouterGen.FD(),
		Data:    make([]byte, frameLen),
		Ifindex: ifindex,
		Repeat:  frames,
		Flags:   testbed.FlagLiveFrames,
		Batch:   batch,
	})
	runtime.KeepAlive(g.objs.XrouterGen)
	// In live-frames mode the kernel reports no return value; the
	// generator's counters and the receiver's show what was sent.
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("generator: on ifindex %d: %w", ifindex, err)
	}
	return nil
}

// Interrupt ends a Run on thread tid (of this process) early. Go's runtime
// uses SIGURG for preemption and ignores stray ones, so it is safe to send;
// the kernel's run loop stops at its next batch when a signal is pending.
func Interrupt(tid int) error {
	return unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
}

// Counts returns how many frames the generator wrote and how many of them
// were slow-path (TTL 1) frames, summed over CPUs.
func (g *Generator) Counts() (frames, slow uint64, err error) {
	for i, dst := range []*uint64{&frames, &slow} {
		var per []uint64
		if err := g.objs.GenStats.Lookup(uint32(i), &per); err != nil {
			return 0, 0, fmt.Errorf("generator: reading counter %d: %w", i, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return frames, slow, nil
}

// Bare is a reference program attached to the router's ingress.
type Bare struct {
	objs bareObjects
	link link.Link
}

// AttachRedirect attaches the bare redirect to ingress (native XDP): every
// frame leaves through egress with the given MACs. Call it from a thread in
// the router's namespace.
func AttachRedirect(ingress, egress int, dmac, smac net.HardwareAddr) (*Bare, error) {
	spec, err := loadBare()
	if err != nil {
		return nil, fmt.Errorf("loading bare redirect spec: %w", err)
	}
	var d, s [6]byte
	copy(d[:], dmac)
	copy(s[:], smac)
	if err := spec.Variables["dmac"].Set(d); err != nil {
		return nil, fmt.Errorf("setting dmac: %w", err)
	}
	if err := spec.Variables["smac"].Set(s); err != nil {
		return nil, fmt.Errorf("setting smac: %w", err)
	}
	b := &Bare{}
	if err := spec.LoadAndAssign(&b.objs, nil); err != nil {
		return nil, fmt.Errorf("loading bare redirect: %w", err)
	}
	if err := b.objs.BareTx.Put(uint32(0), uint32(egress)); err != nil {
		b.objs.Close()
		return nil, fmt.Errorf("bare redirect: devmap entry for egress %d: %w", egress, err)
	}
	return b, b.attach(b.objs.BareRedirect, ingress)
}

// AttachDrop attaches the bare drop to ingress (native XDP). Call it from a
// thread in the router's namespace.
func AttachDrop(ingress int) (*Bare, error) {
	b := &Bare{}
	if err := loadBareObjects(&b.objs, nil); err != nil {
		return nil, fmt.Errorf("loading bare drop: %w", err)
	}
	return b, b.attach(b.objs.BareDrop, ingress)
}

func (b *Bare) attach(prog *ebpf.Program, ifindex int) error {
	l, err := AttachXDP(prog, ifindex)
	if err != nil {
		b.objs.Close()
		return err
	}
	b.link = l
	return nil
}

// Seen is how many frames the program saw, per CPU.
func (b *Bare) Seen() ([]uint64, error) {
	var per []uint64
	if err := b.objs.BareSeen.Lookup(uint32(0), &per); err != nil {
		return nil, fmt.Errorf("reading bare counter: %w", err)
	}
	return per, nil
}

// Close detaches the program and releases it.
func (b *Bare) Close() error {
	err := b.link.Close()
	return errors.Join(err, b.objs.Close())
}

// AttachXDP attaches prog to ifindex in native (driver) mode through a BPF
// link; closing the link detaches it. Call it from a thread in the
// interface's namespace.
func AttachXDP(prog *ebpf.Program, ifindex int) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("attaching XDP to ifindex %d: %w", ifindex, err)
	}
	return l, nil
}

// PerCPU reads entry key of prog's per-CPU array map (the first one it
// uses) as one uint64 per CPU. It shows on which CPUs a program ran, for
// programs whose Go wrapper only gives sums.
func PerCPU(prog *ebpf.Program, key uint32) ([]uint64, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, errors.New("program info: map IDs not available")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, fmt.Errorf("opening map %d: %w", id, err)
		}
		if m.Type() != ebpf.PerCPUArray || m.ValueSize() != 8 {
			m.Close()
			continue
		}
		var per []uint64
		err = m.Lookup(key, &per)
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("reading map %d key %d: %w", id, key, err)
		}
		return per, nil
	}
	return nil, errors.New("program has no per-CPU array of uint64")
}

// PinnedPerCPU reads entry key of the pinned per-CPU array at path whose
// values are a packet and a byte counter (xrouter's stats map), and returns
// the packet counts per CPU.
func PinnedPerCPU(path string, key uint32) ([]uint64, error) {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("opening pinned map %s: %w", path, err)
	}
	defer m.Close()
	if m.Type() != ebpf.PerCPUArray || m.ValueSize() != 16 {
		return nil, fmt.Errorf("pinned map %s: %s with %d-byte values, want a per-CPU array of packet and byte counters", path, m.Type(), m.ValueSize())
	}
	var per []struct{ Packets, Bytes uint64 }
	if err := m.Lookup(key, &per); err != nil {
		return nil, fmt.Errorf("reading pinned map %s key %d: %w", path, key, err)
	}
	out := make([]uint64, len(per))
	for i, v := range per {
		out[i] = v.Packets
	}
	return out, nil
}
