// Package ethtool reads and sets on/off interface features with the
// SIOCETHTOOL ioctl (struct ethtool_value), so that neither the daemon nor
// the tests need the ethtool binary. Both work on the interface of that name
// in the calling thread's network namespace: callers in another namespace
// run them from a thread inside it.
package ethtool

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Commands of linux/ethtool.h that take a struct ethtool_value.
const (
	GetTxCsum uint32 = 0x16 // ETHTOOL_GTXCSUM: TX checksum offload
	SetTxCsum uint32 = 0x17 // ETHTOOL_STXCSUM
	GetGRO    uint32 = 0x2b // ETHTOOL_GGRO: generic receive offload
	SetGRO    uint32 = 0x2c // ETHTOOL_SGRO
)

// value is struct ethtool_value.
type value struct{ cmd, data uint32 }

// Get runs a "get value" command on ifname and reports whether the feature
// is on.
func Get(ifname string, cmd uint32) (bool, error) {
	v := value{cmd: cmd}
	if err := ioctl(ifname, &v); err != nil {
		return false, fmt.Errorf("%s: ethtool command %#x: %w", ifname, cmd, err)
	}
	return v.data != 0, nil
}

// Set runs a "set value" command on ifname, turning the feature on or off
// (as `ethtool -K ifname ... on|off`).
func Set(ifname string, cmd uint32, on bool) error {
	v := value{cmd: cmd}
	if on {
		v.data = 1
	}
	if err := ioctl(ifname, &v); err != nil {
		return fmt.Errorf("%s: ethtool command %#x to %v: %w", ifname, cmd, on, err)
	}
	return nil
}

// ioctl passes v to the kernel in a struct ifreq: the interface name, then
// a pointer to v in the union.
func ioctl(ifname string, v *value) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name longer than %d bytes", unix.IFNAMSIZ-1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket for SIOCETHTOOL: %w", err)
	}
	defer unix.Close(fd)
	var ifr [40]byte // sizeof(struct ifreq)
	copy(ifr[:unix.IFNAMSIZ], ifname)
	*(*uintptr)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = uintptr(unsafe.Pointer(v))
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr[0])))
	// ifr holds v's address as an integer only.
	runtime.KeepAlive(v)
	if e != 0 {
		return e
	}
	return nil
}
