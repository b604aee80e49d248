package devmap

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TC is what tc does on an interface that XDP forwarding would bypass.
// XDP runs before tc ingress, and a frame redirected by XDP is handed to
// the egress driver directly: it skips the egress qdisc and tc egress.
//
// Ingress lists the filters and tcx programs on the interface's ingress:
// every packet arriving there goes to the kernel. Egress lists qdiscs the
// operator set (any qdisc the kernel did not attach itself; see
// operatorQdisc), filters on the egress side and tcx egress programs:
// packets routed out of the interface go to the kernel. Empty lists: tc
// changes nothing the fast path skips.
type TC struct {
	Ingress []string `json:"ingress,omitempty"`
	Egress  []string `json:"egress,omitempty"`
}

func (t TC) equal(o TC) bool {
	return slices.Equal(t.Ingress, o.Ingress) && slices.Equal(t.Egress, o.Egress)
}

// String sums it up for logs and status.
func (t TC) String() string {
	var parts []string
	if len(t.Ingress) > 0 {
		parts = append(parts, "ingress: "+strings.Join(t.Ingress, ", "))
	}
	if len(t.Egress) > 0 {
		parts = append(parts, "egress: "+strings.Join(t.Egress, ", "))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// allQdiscs lists the qdiscs of every interface in the calling thread's
// namespace, by ifindex (one dump for all ports).
func allQdiscs() (map[int][]netlink.Qdisc, error) {
	qs, err := netlink.QdiscList(nil)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing qdiscs: %w", err)
	}
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		// Changed while being read: the caller tries again on the
		// event that the change sent.
		return nil, fmt.Errorf("listing qdiscs: %w", err)
	}
	out := map[int][]netlink.Qdisc{}
	for _, q := range qs {
		a := q.Attrs()
		out[a.LinkIndex] = append(out[a.LinkIndex], q)
	}
	return out, nil
}

// handleMajor is the major half of a tc handle (the "1" of "1:2").
func handleMajor(h uint32) uint32 { return h >> 16 }

// ingressSide says whether a qdisc is the ingress or clsact qdisc (parent
// ffff:fff1), which holds the ingress hook rather than queueing egress.
func ingressSide(q netlink.Qdisc) bool { return q.Attrs().Parent == netlink.HANDLE_INGRESS }

// operatorQdisc says whether an egress qdisc is one somebody configured.
// The qdiscs the kernel attaches by itself when an interface comes up
// (noqueue, pfifo_fast, mq and its per-queue children, or whatever
// net.core.default_qdisc names, such as fq_codel) all have handle 0:;
// tc gives every qdisc it creates a non-zero major handle, even one of
// those same kinds. So a non-zero major is exactly "the operator chose
// this qdisc", whatever its kind: shaping (tbf, htb), delay, or a
// deliberately tuned fq_codel.
func operatorQdisc(q netlink.Qdisc) bool {
	return !ingressSide(q) && handleMajor(q.Attrs().Handle) != 0
}

// readTC inspects one interface. qdiscs is the interface's entry of
// allQdiscs.
func readTC(l netlink.Link, qdiscs []netlink.Qdisc) (TC, error) {
	var t TC
	hasIngress, clsact := false, false
	for _, q := range qdiscs {
		if ingressSide(q) {
			hasIngress = true
			clsact = clsact || q.Type() == "clsact"
			continue
		}
		if operatorQdisc(q) {
			t.Egress = append(t.Egress, fmt.Sprintf("qdisc %s %s", q.Type(), netlink.HandleStr(q.Attrs().Handle)))
		}
	}
	if hasIngress {
		// clsact's ingress hook and the ingress qdisc's block are both
		// reached through ffff:fff2; shared blocks show up here too.
		fs, err := filterKinds(l, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			return TC{}, err
		}
		for _, f := range fs {
			t.Ingress = append(t.Ingress, "filter "+f)
		}
	}
	if clsact {
		// Only clsact has an egress hook (the ingress qdisc would answer
		// with its one block, the ingress filters).
		fs, err := filterKinds(l, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return TC{}, err
		}
		for _, f := range fs {
			t.Egress = append(t.Egress, "clsact egress filter "+f)
		}
	}
	// Filters on the root qdisc (the kernel's default fq_codel takes
	// them) classify egress traffic too.
	if len(t.Egress) == 0 {
		fs, err := filterKinds(l, 0)
		if err != nil {
			return TC{}, err
		}
		for _, f := range fs {
			t.Egress = append(t.Egress, "root qdisc filter "+f)
		}
	}
	// tcx (BPF links on the tc hooks, Linux 6.6) needs no qdisc and sends
	// no rtnetlink event.
	in, out, err := tcxPrograms(l.Attrs().Index)
	if err != nil {
		return TC{}, err
	}
	t.Ingress = append(t.Ingress, tcxNames(in, false)...)
	t.Egress = append(t.Egress, tcxNames(out, true)...)
	return t, nil
}

func tcxNames(ids []uint32, egress bool) []string {
	var out []string
	for _, id := range ids {
		if egress {
			out = append(out, fmt.Sprintf("tcx egress program %d", id))
		} else {
			out = append(out, fmt.Sprintf("tcx program %d", id))
		}
	}
	return out
}

// tcxSig is the part of t that names tcx programs, to notice that they
// changed without re-reading the rest.
func tcxSig(t TC) string {
	var b strings.Builder
	for _, s := range append(slices.Clone(t.Ingress), t.Egress...) {
		if strings.HasPrefix(s, "tcx ") {
			b.WriteString(s)
			b.WriteByte(';')
		}
	}
	return b.String()
}

// filterKinds lists the filters under parent as "KIND" or "KIND (chain N,
// pref P)", one per filter.
func filterKinds(l netlink.Link, parent uint32) ([]string, error) {
	fs, err := netlink.FilterList(l, parent)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil // no such hook on this qdisc
		}
		return nil, fmt.Errorf("listing tc filters of %s (parent %s): %w", l.Attrs().Name, netlink.HandleStr(parent), err)
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range fs {
		a := f.Attrs()
		s := fmt.Sprintf("%s pref %d", f.Type(), a.Priority)
		if a.Chain != nil && *a.Chain != 0 {
			s += fmt.Sprintf(" chain %d", *a.Chain)
		}
		// A filter with several handles (u32 hash tables) is dumped
		// once per node: name each filter once.
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// tcxPrograms lists the ids of the tcx programs on an interface's ingress
// and egress. A kernel without tcx has none.
func tcxPrograms(ifindex int) (ingress, egress []uint32, err error) {
	q := func(at ebpf.AttachType) ([]uint32, error) {
		r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV) {
				return nil, nil
			}
			return nil, fmt.Errorf("querying tcx programs of ifindex %d: %w", ifindex, err)
		}
		var ids []uint32
		for _, p := range r.Programs {
			ids = append(ids, uint32(p.ID))
		}
		return ids, nil
	}
	if ingress, err = q(ebpf.AttachTCXIngress); err != nil {
		return nil, nil, err
	}
	egress, err = q(ebpf.AttachTCXEgress)
	return ingress, egress, err
}
