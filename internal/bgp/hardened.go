package bgp

import (
	"encoding/binary"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// crasherNLRI is an IPv4 FlowSpec NLRI whose protocol component announces
// an 8-octet value where only one octet is left: unpatched GoBGP v3.37
// slices past the end of the message and panics.
var crasherNLRI = []byte{8, 1, 24, 10, 99, 9, 3, 0xb1, 17}

// DecoderHardened reports whether the GoBGP message decoder linked into
// this binary rejects crasherNLRI with an error instead of panicking, that
// is, whether it was built with tools/gobgppatch's bounds checks (the
// Makefile does this). Decoding runs in GoBGP's session goroutines, where a
// panic cannot be recovered and ends the daemon.
func DecoderHardened() (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, _ = bgp.ParseBGPMessage(flowSpecUpdate(1, false, crasherNLRI))
	return true
}

// flowSpecUpdate is a BGP UPDATE message whose MP_REACH_NLRI (or, with
// unreach, MP_UNREACH_NLRI) attribute carries nlri as FlowSpec NLRI of the
// AFI given (1 IPv4, 2 IPv6), with nothing checked or fixed up: the bytes
// are what a peer could send.
func flowSpecUpdate(afi uint16, unreach bool, nlri []byte) []byte {
	var v []byte
	v = binary.BigEndian.AppendUint16(v, afi)
	v = append(v, 133)
	code := byte(15)
	if !unreach {
		v = append(v, 0, 0) // no next hop, no reserved octet content
		code = 14
	}
	v = append(v, nlri...)
	attr := []byte{0x90, code}
	attr = binary.BigEndian.AppendUint16(attr, uint16(len(v)))
	attr = append(attr, v...)
	body := []byte{0, 0}
	body = binary.BigEndian.AppendUint16(body, uint16(len(attr)))
	body = append(body, attr...)
	msg := make([]byte, 16, 19+len(body))
	for i := range msg {
		msg[i] = 0xff
	}
	msg = binary.BigEndian.AppendUint16(msg, uint16(19+len(body)))
	msg = append(msg, bgp.BGP_MSG_UPDATE)
	return append(msg, body...)
}
