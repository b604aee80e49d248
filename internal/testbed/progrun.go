package testbed

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// XDPMd is struct xdp_md, BPF_PROG_RUN's context for XDP. The kernel
// requires data_end == len(frame) and data == data_meta == egress_ifindex
// == 0, and resolves ingress_ifindex in the calling thread's network
// namespace.
type XDPMd struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

// FlagLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES: the frames an XDP program
// returns XDP_TX or XDP_REDIRECT for are really sent, and the kernel
// reports no return value or output frame.
const FlagLiveFrames = 1 << 1

// XDPRun is one BPF_PROG_TEST_RUN of an XDP program, made with the raw
// syscall rather than through cilium/ebpf, whose Run neither reports the
// kernel's duration nor takes the live-frames batch size.
type XDPRun struct {
	ProgFD  int    // the program, by file descriptor
	Data    []byte // the frame
	DataOut []byte // where the kernel writes the resulting frame; nil: nowhere
	Ifindex int    // ingress_ifindex of the context
	Repeat  uint32 // how many runs (0 or 1: one)
	Flags   uint32 // FlagLiveFrames or 0
	Batch   uint32 // frames per kernel batch with FlagLiveFrames (0: the kernel's default)
	// Restart runs again when a signal interrupted the run (the Go
	// runtime's preemption signals interrupt long runs). Without it an
	// interrupted run returns an error wrapping unix.EINTR, which is how a
	// caller ends a live-frames run early on purpose.
	Restart bool
}

// XDPResult is what the kernel reports of a run.
type XDPResult struct {
	Retval   uint32        // the verdict of the last run
	Duration time.Duration // the mean time per run
	DataOut  []byte        // DataOut cut to the length the kernel wrote
}

// testRunAttr is the BPF_PROG_TEST_RUN member of union bpf_attr.
type testRunAttr struct {
	ProgFD      uint32
	Retval      uint32
	DataSizeIn  uint32
	DataSizeOut uint32
	DataIn      uint64
	DataOut     uint64
	Repeat      uint32
	Duration    uint32
	CtxSizeIn   uint32
	CtxSizeOut  uint32
	CtxIn       uint64
	CtxOut      uint64
	Flags       uint32
	CPU         uint32
	BatchSize   uint32
	_           uint32
}

// RunXDP runs the program once (or Repeat times), from the calling thread:
// call it from a thread inside the namespace that Ifindex belongs to.
func RunXDP(r XDPRun) (XDPResult, error) {
	ctx := XDPMd{DataEnd: uint32(len(r.Data)), IngressIfindex: uint32(r.Ifindex)}
	attr := testRunAttr{
		ProgFD:     uint32(r.ProgFD),
		DataSizeIn: uint32(len(r.Data)),
		DataIn:     addr(r.Data),
		Repeat:     r.Repeat,
		CtxSizeIn:  uint32(unsafe.Sizeof(ctx)),
		CtxIn:      uint64(uintptr(unsafe.Pointer(&ctx))),
		Flags:      r.Flags,
		BatchSize:  r.Batch,
	}
	if len(r.DataOut) > 0 {
		attr.DataSizeOut = uint32(len(r.DataOut))
		attr.DataOut = addr(r.DataOut)
	}
	var errno unix.Errno
	for {
		_, _, errno = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != unix.EINTR || !r.Restart {
			break
		}
	}
	// attr holds the buffers' addresses as integers only.
	runtime.KeepAlive(r.Data)
	runtime.KeepAlive(r.DataOut)
	runtime.KeepAlive(&ctx)
	if errno != 0 {
		return XDPResult{}, fmt.Errorf("BPF_PROG_TEST_RUN of program fd %d: %w", r.ProgFD, errno)
	}
	res := XDPResult{Retval: attr.Retval, Duration: time.Duration(attr.Duration)}
	if len(r.DataOut) > 0 {
		res.DataOut = r.DataOut[:min(int(attr.DataSizeOut), len(r.DataOut))]
	}
	return res, nil
}

// addr is the address of b's first byte as bpf_attr takes it; 0 for an
// empty b, which the kernel rejects with EINVAL as tests expect.
func addr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}
