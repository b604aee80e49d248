package kernel

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func nhAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// TestDecodeNexthop: the id, the protocol and whether the object is a
// group are read from a nexthop message body.
func TestDecodeNexthop(t *testing.T) {
	single := []byte{unix.AF_INET, 0, 186, 0, 0, 0, 0, 0}
	single = nhAttr(single, unix.NHA_ID, u32(408944640))
	single = nhAttr(single, unix.NHA_GATEWAY, []byte{10, 0, 0, 2})
	single = nhAttr(single, unix.NHA_OIF, u32(3))
	group := []byte{unix.AF_UNSPEC, 0, 4, 0, 0, 0, 0, 0}
	group = nhAttr(group, unix.NHA_ID, u32(9))
	group = nhAttr(group, unix.NHA_GROUP, append(append(u32(7), 0, 0, 0, 0), append(u32(8), 0, 0, 0, 0)...))
	for _, c := range []struct {
		name string
		b    []byte
		want NexthopInfo
		ok   bool
	}{
		{"single", single, NexthopInfo{ID: 408944640, Protocol: 186}, true},
		{"group", group, NexthopInfo{ID: 9, Group: true, Protocol: 4}, true},
		{"short", single[:4], NexthopInfo{}, false},
		{"no id", []byte{unix.AF_INET, 0, 186, 0, 0, 0, 0, 0}, NexthopInfo{Protocol: 186}, false},
	} {
		got, ok := DecodeNexthop(c.b)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: DecodeNexthop = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
