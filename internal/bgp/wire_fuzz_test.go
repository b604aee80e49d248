package bgp

import (
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// FuzzFlowSpecNLRIDecode feeds FlowSpec NLRI bytes, as any established
// neighbour can send them, to the decoder the BGP sessions use. A panic in
// it ends the daemon (the session goroutines do not recover), so whatever
// the bytes, decoding must end in a message or an error. The seeds include
// the NLRI that crashed GoBGP v3.37 unpatched (a component value running
// past the NLRI); see tools/gobgppatch.
func FuzzFlowSpecNLRIDecode(f *testing.F) {
	for _, seed := range [][]byte{
		{8, 1, 24, 10, 99, 9, 3, 0x81, 17},            // dst 10.99.9.0/24 proto =17
		crasherNLRI,                                   // proto value says 8 octets, 1 left
		{3, 3, 0x31, 17},                              // same, NLRI of its own
		{2, 1, 32},                                    // prefix length past the NLRI
		{3, 1, 64, 10},                                // prefix longer than an address
		{2, 2, 8},                                     // IPv6 prefix without offset octet
		{4, 12, 0x01, 0x80, 0x91},                     // fragment, then junk
		{0xf0, 0x03, 3, 0x81, 6},                      // two-octet length
		{0xf0, 0xff, 3},                               // two-octet length past the end
		{5, 3, 0x01, 6, 0x81, 17, 2, 3, 0x81, 6},      // component past its NLRI into the next
		{6, 200, 0x81, 1, 1, 8, 10},                   // unknown type first
		{9, 1, 24, 10, 99, 9, 4, 0x11, 0, 0x81, 0x50}, // 2-octet port, end bit later
	} {
		f.Add(uint8(1), false, seed)
		f.Add(uint8(2), false, seed)
		f.Add(uint8(1), true, seed)
	}
	f.Fuzz(func(t *testing.T, afi uint8, unreach bool, nlri []byte) {
		msg := flowSpecUpdate(uint16(afi%2)+1, unreach, nlri)
		m, err := bgp.ParseBGPMessage(msg)
		if err == nil && m == nil {
			t.Fatal("no message and no error")
		}
	})
}

// TestDecoderHardened fails on a build without tools/gobgppatch: there,
// the daemon warns at start that a neighbour can crash it.
func TestDecoderHardened(t *testing.T) {
	if !DecoderHardened() {
		t.Fatal("GoBGP's decoder panics on a FlowSpec component running past its NLRI: build through the Makefile (GOWORK=build/go.work from tools/gobgppatch)")
	}
}
