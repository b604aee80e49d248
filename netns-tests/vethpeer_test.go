package netnstests

import (
	"strings"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestVethPeerWithoutXDPPrivileged: frames redirected into a veth whose peer
// has neither an XDP program nor GRO vanish without a counter moving. The
// router cannot fix the peer, so `xrouter status` must name it, on the
// interface whose peer it is, and the daemon must log it.
func TestVethPeerWithoutXDPPrivileged(t *testing.T) {
	tp := newTopo(t)
	if err := tp.DstSink.Close(); err != nil { // detaches it
		t.Fatalf("detaching the sink from %s: %v", testbed.LineDstDev, err)
	}
	d := startDaemon(t, tp.Router, tp.defaultConfig(t))

	st := readStatus(t, tp.Router, tp.Pin)
	var dstWarn, srcWarn []string
	for _, i := range st.Interfaces {
		switch i.Name {
		case testbed.LineRouterDstDev:
			dstWarn = i.Warnings
			if !strings.Contains(i.VethPeer, testbed.LineDstDev+"@"+tp.Dst.Name()) {
				t.Errorf("%s: veth_peer = %q, want %s@%s", i.Name, i.VethPeer, testbed.LineDstDev, tp.Dst.Name())
			}
		case testbed.LineRouterSrcDev:
			srcWarn = i.Warnings
		}
	}
	if len(dstWarn) != 1 || !strings.Contains(dstWarn[0], "no XDP program") || !strings.Contains(dstWarn[0], testbed.LineDstDev) {
		t.Errorf("%s warnings = %q, want one naming %s without XDP", testbed.LineRouterDstDev, dstWarn, testbed.LineDstDev)
	}
	if len(srcWarn) != 0 {
		t.Errorf("%s (peer runs XDP) warnings = %q, want none", testbed.LineRouterSrcDev, srcWarn)
	}
	d.waitLog(t, "has no XDP program", 5*time.Second)
}
