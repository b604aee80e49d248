package testbed

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool "set value" commands (linux/ethtool.h).
const (
	EthtoolSTxCsum = 0x17 // ETHTOOL_STXCSUM: TX checksum offload
	EthtoolSGRO    = 0x2c // ETHTOOL_SGRO: generic receive offload
)

// SetEthtool sets an on/off ethtool feature of dev in the namespace (as
// `ethtool -K dev ... on|off`), with the SIOCETHTOOL ioctl, so the tests
// need no ethtool binary.
func (n *Netns) SetEthtool(dev string, cmd uint32, on bool) error {
	val := struct{ cmd, data uint32 }{cmd: cmd}
	if on {
		val.data = 1
	}
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var ifr [40]byte // struct ifreq: name, then the ethtool_value pointer
		copy(ifr[:unix.IFNAMSIZ], dev)
		*(*uintptr)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = uintptr(unsafe.Pointer(&val))
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr[0])))
		runtime.KeepAlive(&val)
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %s: %s: ethtool command %#x to %v: %w", n.name, dev, cmd, on, err)
	}
	return nil
}

// LockedBuffer collects a child process's output while a test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
